"""Clip scripts and engagement targets for training, calibrating and testing the engagement model.

    python -m training.data.build_clips --out data/clips [--train 4000 --calib 600 --test 400]
    python -m training.data.build_clips --oracle-report [--sample 1000]    # numbers in docs/engagement-ground-truth.md
    python -m training.data.build_clips --crop-benchmark                    # crop rendering speed
    python -m training.data.build_clips --tier-bars                         # source of clips.TIER_BARS

Writes, per split, `scripts.jsonl` (one ClipScript per line) and `targets.parquet` (one row per clip: observed
targets, and the noise-free oracle's prefixed `oracle_`). Scripts and truth only, no rendering: the engagement
trainer renders crops with `clips.character_crops`. Splits hold disjoint characters (as training/data/build.py
does for stills), so calibration and test measure clips of characters the model has never seen.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from facecast.vocab import AUDIENCE_GROUPS, ENGAGEMENT_CLASSES
from training.data.clips import (
    CLASS_THRESHOLDS,
    NOISE_SD,
    ClipScript,
    EngagementTruth,
    _observed_from_logits,
    _truth_from_logits,
    _truth_logits,
    character_crops,
    sample_clip_script,
)

# first character id, end id, seed of each split (ids "c%05d"; the same ranges as the still splits)
SPLITS = {"train": (0, 1200, 0), "calib": (1200, 1300, 1), "test": (1300, 1500, 2)}
#: Seeds of the oracle report's sample: a range no split uses.
REPORT_FIRST_SEED = 900_000_000


def clip_seed(split_seed: int, index: int) -> int:
    return split_seed * 1_000_003 + index


def _target_columns(truth: EngagementTruth, prefix: str = "") -> dict:
    row = {f"{prefix}engagement": truth.engagement, f"{prefix}resonance": truth.resonance,
           f"{prefix}shareability": truth.shareability,
           **{f"{prefix}appeal_{g}": float(v) for g, v in zip(AUDIENCE_GROUPS, truth.appeal)},
           f"{prefix}engagement_class": truth.engagement_class, f"{prefix}curve": truth.curve.tolist()}
    return row


def clip_row(script: ClipScript, clip_id: str) -> dict:
    logits = _truth_logits(script)
    oracle = _truth_from_logits(*logits)
    observed = _observed_from_logits(script.seed, logits)
    return dict(clip_id=clip_id, seed=script.seed, duration_s=script.duration_s,
                n_characters=len(script.characters), styles=",".join(script.styles), mixed_style=script.mixed_style,
                **_target_columns(observed), **_target_columns(oracle, "oracle_"))


def build_split(out_dir: Path, split: str, count: int) -> pd.DataFrame:
    first, end, split_seed = SPLITS[split]
    ids = [f"c{n:05d}" for n in range(first, end)]
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    with open(out_dir / "scripts.jsonl", "w") as handle:
        for i in range(count):
            script = sample_clip_script(clip_seed(split_seed, i), character_ids=ids)
            clip_id = f"{split}-{i:05d}"
            handle.write(json.dumps({"clip_id": clip_id, **script.to_dict()}) + "\n")
            rows.append(clip_row(script, clip_id))
    frame = pd.DataFrame(rows)
    frame.to_parquet(out_dir / "targets.parquet", index=False)
    return frame


def read_scripts(path: Path) -> list[tuple[str, ClipScript]]:
    """(clip_id, script) per line of a scripts.jsonl written by build_split."""
    out = []
    for line in Path(path).read_text().splitlines():
        data = json.loads(line)
        clip_id = data.pop("clip_id")
        out.append((clip_id, ClipScript.from_dict(data)))
    return out


def oracle_report(sample: int = 1000, first_seed: int = REPORT_FIRST_SEED) -> str:
    """Markdown: how well the noise-free oracle predicts the observed labels, and the targets' distribution."""
    from scipy.stats import spearmanr

    rows = [clip_row(sample_clip_script(first_seed + i), str(i)) for i in range(sample)]
    frame = pd.DataFrame(rows)
    names = ["engagement", "resonance", "shareability", *(f"appeal_{g}" for g in AUDIENCE_GROUPS)]
    lines = [f"Sample: {sample} clips, seeds {first_seed}..{first_seed + sample - 1} (all characters).", "",
             "| target | noise sd (logit) | oracle Spearman vs observed | oracle MAE vs observed |",
             "|---|---|---|---|"]
    for name in names:
        sd = NOISE_SD["appeal" if name.startswith("appeal") else name]
        rho = spearmanr(frame[f"oracle_{name}"], frame[name]).correlation
        mae = (frame[f"oracle_{name}"] - frame[name]).abs().mean()
        lines.append(f"| {name} | {sd} | {rho:.3f} | {mae:.3f} |")
    curve_true = np.concatenate(frame["oracle_curve"].to_list())
    curve_obs = np.concatenate(frame["curve"].to_list())
    lines.append(f"| curve (all steps) | {NOISE_SD['curve']} | {spearmanr(curve_true, curve_obs).correlation:.3f} | "
                 f"{np.abs(curve_true - curve_obs).mean():.3f} |")
    accuracy = float((frame["oracle_engagement_class"] == frame["engagement_class"]).mean())
    lines += ["", f"Oracle 3-class accuracy against the observed class: **{accuracy:.3f}** "
              f"(thresholds {CLASS_THRESHOLDS[0]} / {CLASS_THRESHOLDS[1]} on engagement).", "",
              "| class | oracle share | observed share |", "|---|---|---|"]
    for k, name in enumerate(ENGAGEMENT_CLASSES):
        lines.append(f"| {name} | {(frame['oracle_engagement_class'] == k).mean():.3f} | "
                     f"{(frame['engagement_class'] == k).mean():.3f} |")
    lines += ["", "| observed target | mean | sd | 10 % | 50 % | 90 % |", "|---|---|---|---|---|---|"]
    for name in names:
        v = frame[name]
        lines.append(f"| {name} | {v.mean():.3f} | {v.std():.3f} | {v.quantile(0.1):.3f} | {v.quantile(0.5):.3f} | "
                     f"{v.quantile(0.9):.3f} |")
    lines += ["", "| clips | share |", "|---|---|"]
    for n in range(1, 5):
        lines.append(f"| {n} character{'s' if n > 1 else ''} | {(frame['n_characters'] == n).mean():.3f} |")
    lines.append(f"| mixed-style scenes | {frame['mixed_style'].mean():.3f} |")
    lines.append(f"| duration (s): mean, 10 %, 90 % | {frame['duration_s'].mean():.1f}, "
                 f"{frame['duration_s'].quantile(0.1):.1f}, {frame['duration_s'].quantile(0.9):.1f} |")
    return "\n".join(lines)


def tier_bars(sample: int = 1000) -> tuple[float, float]:
    """Tertiles of the engagement quality score over clip seeds 0..sample-1: the source of clips.TIER_BARS."""
    quality = [_truth_logits(sample_clip_script(seed))[5]["quality"] for seed in range(sample)]
    low, high = np.quantile(quality, [1 / 3, 2 / 3])
    return round(float(low), 2), round(float(high), 2)


def crop_benchmark(clips: int = 12) -> str:
    """Milliseconds per 64-px character crop on one core, next to synthetic.render_face in the same process."""
    from training.data.synthetic import character_for_id, expression_for, render_face

    for seed in range(2):
        character_crops(sample_clip_script(REPORT_FIRST_SEED + seed))  # warm caches
    crops, seconds = 0, 0.0
    for seed in range(clips):
        script = sample_clip_script(REPORT_FIRST_SEED + seed)
        started = time.perf_counter()
        _, _, visible = character_crops(script)
        seconds += time.perf_counter() - started
        crops += int(visible.sum())
    rng = np.random.default_rng(0)
    faces = [(character_for_id(f"c{i:05d}"), expression_for("happiness", 0.8, rng)) for i in range(50)]
    started = time.perf_counter()
    for i, (character, expression) in enumerate(faces * 4):
        render_face(character, expression, "anime", 64, np.random.default_rng(i))
    still_ms = (time.perf_counter() - started) / (len(faces) * 4) * 1e3
    return (f"{crops} crops from {clips} clips: {seconds / crops * 1e3:.2f} ms per crop "
            f"(synthetic.render_face in the same run: {still_ms:.2f} ms per 64-px still)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data/clips"))
    parser.add_argument("--train", type=int, default=4000)
    parser.add_argument("--calib", type=int, default=600)
    parser.add_argument("--test", type=int, default=400)
    parser.add_argument("--oracle-report", action="store_true", help="print the oracle's scores and exit")
    parser.add_argument("--sample", type=int, default=1000, help="clips in the oracle report")
    parser.add_argument("--crop-benchmark", action="store_true", help="print crop rendering speed and exit")
    parser.add_argument("--tier-bars", action="store_true", help="print the quality tertiles (clips.TIER_BARS)")
    args = parser.parse_args(argv)
    if args.oracle_report:
        print(oracle_report(args.sample))
        return 0
    if args.tier_bars:
        print(f"quality tertiles over seeds 0..{args.sample - 1}: {tier_bars(args.sample)}")
        return 0
    if args.crop_benchmark:
        print(crop_benchmark())
        return 0
    started = time.perf_counter()
    for split, count in (("train", args.train), ("calib", args.calib), ("test", args.test)):
        frame = build_split(args.out / split, split, count)
        shares = np.bincount(frame["engagement_class"], minlength=3) / max(1, len(frame))
        print(f"[clips] {split}: {count} clips → {args.out / split} (classes low/medium/high "
              f"{shares[0]:.2f}/{shares[1]:.2f}/{shares[2]:.2f})", flush=True)
    print(f"[clips] done in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
