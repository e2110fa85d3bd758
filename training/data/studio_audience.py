"""A synthetic studio whose audience responds by a different documented function than the default ground truth.

    python -m training.data.studio_audience --out data/studio --clips 60 --seed 7    # clips + manifest + truth
    python -m training.data.studio_audience --describe [--scripts 300 --seed 0]       # the numbers in the docs

Clips are `clips.sample_clip_script` scripts of DURATION_S (10 s) with characters of the test split
(build_clips.SPLITS["test"], c01300–c01499: the engagement model never trained on them); script seed of clip i of
set `seed` = 800_000_000 + 100_003·seed + i. The scripts are not biased: anger shows in about half of them.

The studio's audience reads the same thing the default truth reads (docs/engagement-ground-truth.md): each
character at each model step (MODEL_RATE_HZ = 4, step centres (k + 0.5) / 4 s), its emotion as drawn and whether
it is *shown* (clarity = visible fraction × size readability ≥ SHOWN_CLARITY = 0.2). From those:

    anger       = shown character-steps showing anger / shown character-steps (0 when nothing is shown)
    neutral_run = longest run of steps in which no shown character is non-neutral (all neutral, or no face
                  shown), / number of steps
    solo        = share of steps with exactly one character shown (the default rewards interplay instead)
    happy       = shown character-steps showing happiness / shown character-steps
    clash       = share of steps where a shown character is angry and at least two shown characters are
                  non-neutral (a confrontation)

    engagement logit z = −0.8 + 8.0 anger − 6.0 neutral_run + 1.5 solo;       engagement = σ(z)
    like rate          = 0.10 · σ(−1.0 + 0.8 z + 3.0 happy)
    share rate         = 0.02 · σ(−1.5 + 0.5 z + 4.0 clash)

Screening noise (`studio_observed`, one numpy Generator): watch_pct = 100 · σ(z + N(0, WATCH_NOISE_SD = 0.6));
views = max(100, round(exp(N(ln 50 000, 0.8)))); likes = round(views · like rate · exp(N(0, 0.2))); shares =
round(views · share rate · exp(N(0, 0.3))). `describe_spread` measures the spread, the Spearman with the default
truth and the oracle Spearman this noise leaves (docs/engagement-ground-truth.md, "A studio audience that differs").
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facecast.engagement_features import step_count, step_times
from facecast.vocab import EMOTIONS
from training.data.build_clips import SPLITS
from training.data.clips import (
    _NEUTRAL,
    SHOWN_CLARITY,
    SIZE_READABLE,
    SIZE_UNREADABLE,
    ClipScript,
    _geometry,
    engagement_truth,
    sample_clip_script,
    write_clip,
)

DURATION_S = 10.0
#: Characters the studio's clips draw from: the test split's (build_clips.SPLITS["test"]).
STUDIO_CHARACTERS = tuple(f"c{n:05d}" for n in range(*SPLITS["test"][:2]))
FIRST_SCRIPT_SEED, SET_SEED_STRIDE = 800_000_000, 100_003

STUDIO_WEIGHTS = dict(bias=-0.8, anger=8.0, neutral_run=-6.0, solo=1.5)
LIKE_SCALE, LIKE_WEIGHTS = 0.10, dict(bias=-1.0, engagement=0.8, happy=3.0)
SHARE_SCALE, SHARE_WEIGHTS = 0.02, dict(bias=-1.5, engagement=0.5, clash=4.0)
WATCH_NOISE_SD = 0.6  # logit sd of watch_pct around the truth
VIEWS_LOG_MEAN, VIEWS_LOG_SD = float(np.log(50_000)), 0.8
LIKE_NOISE_SD, SHARE_NOISE_SD = 0.2, 0.3  # log-space sd of the observed like and share rates
MANIFEST_COLUMNS = ("path", "views", "likes", "shares", "watch_pct")
TRUTH_COLUMNS = ("path", "seed", "studio_engagement", "default_engagement", "like_rate", "share_rate")

_ANGER = EMOTIONS.index("anger")
_HAPPINESS = EMOTIONS.index("happiness")


@dataclass(frozen=True)
class StudioTruth:
    engagement: float  # σ(logit), in (0, 1)
    logit: float
    like_rate: float
    share_rate: float
    components: dict = field(default_factory=dict, compare=False)  # anger, neutral_run, solo, happy, clash


def _sigmoid(z: float) -> float:
    return float(1.0 / (1.0 + np.exp(-z)))


def longest_run(flags: np.ndarray) -> int:
    best = run = 0
    for flag in flags:
        run = run + 1 if flag else 0
        best = max(best, run)
    return best


def studio_components(script: ClipScript) -> dict[str, float]:
    """The clip quantities the studio's audience responds to (module docstring), from what the script shows."""
    n_steps = step_count(script.duration_s)
    geo = _geometry(script, step_times(n_steps))
    size = np.clip((geo.face_height - SIZE_UNREADABLE) / (SIZE_READABLE - SIZE_UNREADABLE), 0, 1) ** 0.5
    shown = geo.visible * size >= SHOWN_CLARITY  # C x T, the default truth's "shown"
    n_shown = max(1, int(shown.sum()))
    expressive = shown & (geo.emotion != _NEUTRAL)
    angry = shown & (geo.emotion == _ANGER)
    return dict(
        anger=float(angry.sum() / n_shown),
        neutral_run=longest_run(~expressive.any(axis=0)) / n_steps,
        solo=float((shown.sum(axis=0) == 1).mean()),
        happy=float((shown & (geo.emotion == _HAPPINESS)).sum() / n_shown),
        clash=float((angry.any(axis=0) & (expressive.sum(axis=0) >= 2)).mean()),
    )


def studio_truth(script: ClipScript) -> StudioTruth:
    """The studio audience's noise-free response to the clip."""
    c = studio_components(script)
    w = STUDIO_WEIGHTS
    z = w["bias"] + w["anger"] * c["anger"] + w["neutral_run"] * c["neutral_run"] + w["solo"] * c["solo"]
    like = LIKE_SCALE * _sigmoid(
        LIKE_WEIGHTS["bias"] + LIKE_WEIGHTS["engagement"] * z + LIKE_WEIGHTS["happy"] * c["happy"]
    )
    share = SHARE_SCALE * _sigmoid(
        SHARE_WEIGHTS["bias"] + SHARE_WEIGHTS["engagement"] * z + SHARE_WEIGHTS["clash"] * c["clash"]
    )
    return StudioTruth(_sigmoid(z), float(z), like, share, c)


def studio_observed(truth: StudioTruth, rng: np.random.Generator) -> dict[str, float | int]:
    """What the studio's screening reports: views, likes, shares, watch_pct (the manifest's metrics)."""
    watch_pct = 100.0 * _sigmoid(truth.logit + rng.normal(0, WATCH_NOISE_SD))
    views = max(100, int(round(float(np.exp(rng.normal(VIEWS_LOG_MEAN, VIEWS_LOG_SD))))))
    likes = int(round(views * truth.like_rate * float(np.exp(rng.normal(0, LIKE_NOISE_SD)))))
    shares = int(round(views * truth.share_rate * float(np.exp(rng.normal(0, SHARE_NOISE_SD)))))
    return dict(views=views, likes=likes, shares=shares, watch_pct=round(watch_pct, 3))


def script_seed(seed: int, index: int) -> int:
    return FIRST_SCRIPT_SEED + SET_SEED_STRIDE * seed + index


def studio_scripts(
    n_clips: int, seed: int, duration_s: float = DURATION_S, width: int = 640, height: int = 360
) -> list[ClipScript]:
    """The set's scripts: clip i has seed script_seed(seed, i) and test-split characters."""
    return [
        sample_clip_script(
            script_seed(seed, i), character_ids=STUDIO_CHARACTERS, duration_s=duration_s, width=width, height=height
        )
        for i in range(n_clips)
    ]


def studio_rows(
    n_clips: int, seed: int, duration_s: float = DURATION_S, width: int = 640, height: int = 360
) -> list[tuple[ClipScript, dict, dict]]:
    """Per clip of the set, without rendering: (script, manifest row, truth row). Clip i is
    clips/studio-{i:03d}.mp4; its screening noise comes from numpy Generator [seed, i, 0x57D0]."""
    rows = []
    for i, script in enumerate(studio_scripts(n_clips, seed, duration_s, width, height)):
        rel = f"clips/studio-{i:03d}.mp4"
        truth = studio_truth(script)
        observed = studio_observed(truth, np.random.default_rng([seed, i, 0x57D0]))
        truth_row = dict(
            path=rel,
            seed=script.seed,
            studio_engagement=round(truth.engagement, 6),
            default_engagement=round(engagement_truth(script).engagement, 6),
            like_rate=round(truth.like_rate, 6),
            share_rate=round(truth.share_rate, 6),
        )
        rows.append((script, dict(path=rel, **observed), truth_row))
    return rows


def write_studio_set(
    out_dir: str | Path,
    n_clips: int,
    seed: int,
    duration_s: float = DURATION_S,
    width: int = 640,
    height: int = 360,
    log=None,
    workers: int = 1,
) -> Path:
    """Render the set to out_dir/clips/studio-NNN.mp4 and write out_dir/manifest.csv (training.studio_engagement's
    format, paths relative to it, no split column) and out_dir/truth.csv (TRUTH_COLUMNS). Returns the manifest.
    `workers` > 1 renders that many clips at once in separate processes (the same files: each is seeded)."""
    out_dir = Path(out_dir)
    (out_dir / "clips").mkdir(parents=True, exist_ok=True)
    rows = studio_rows(n_clips, seed, duration_s, width, height)
    jobs = [(script, out_dir / manifest_row["path"], width, height) for script, manifest_row, _ in rows]
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            seconds = list(pool.map(_render, jobs))
    else:
        seconds = [_render(job) for job in jobs]
    if log:
        for (_, manifest_row, truth_row), took in zip(rows, seconds):
            log(
                f"[studio] {manifest_row['path']}: rendered in {took:.1f} s, "
                f"studio truth {truth_row['studio_engagement']:.3f}, watch_pct {manifest_row['watch_pct']:.1f}"
            )
    _write_csv(out_dir / "truth.csv", TRUTH_COLUMNS, [r[2] for r in rows])
    return _write_csv(out_dir / "manifest.csv", MANIFEST_COLUMNS, [r[1] for r in rows])


def _render(job: tuple) -> float:
    script, path, width, height = job
    started = time.perf_counter()
    write_clip(script, path, width, height)
    return time.perf_counter() - started


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict]) -> Path:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
    return path


def describe_spread(n_scripts: int = 300, seed: int = 0, set_size: int = 60, draws: int = 1000) -> dict:
    """The studio truth's spread over the first `n_scripts` scripts of set `seed`, its Spearman with the default
    engagement truth, and the oracle Spearman (truth vs observed watch_pct) over `draws` sets of `set_size` clips
    drawn from those scripts, each with fresh screening noise; and the realised oracle Spearman of the set that
    `write_studio_set(out, set_size, seed)` writes (its own noise)."""
    from scipy.stats import spearmanr

    scripts = studio_scripts(n_scripts, seed)
    truths = [studio_truth(s) for s in scripts]
    studio = np.array([t.engagement for t in truths])
    default = np.array([engagement_truth(s).engagement for s in scripts])
    components = {k: np.array([t.components[k] for t in truths]) for k in truths[0].components}
    rng = np.random.default_rng([seed, 0x0AC1E])
    oracle = []
    for _ in range(draws):
        pick = rng.choice(n_scripts, size=min(set_size, n_scripts), replace=False)
        watch = [studio_observed(truths[i], rng)["watch_pct"] for i in pick]
        oracle.append(spearmanr(studio[pick], watch).correlation)
    realised = studio_rows(set_size, seed)
    set_oracle = spearmanr([r[2]["studio_engagement"] for r in realised], [r[1]["watch_pct"] for r in realised])
    like = np.array([t.like_rate for t in truths])
    share = np.array([t.share_rate for t in truths])
    return dict(
        n_scripts=n_scripts,
        seed=seed,
        engagement_mean=float(studio.mean()),
        engagement_sd=float(studio.std()),
        engagement_quantiles=[float(q) for q in np.quantile(studio, [0.1, 0.5, 0.9])],
        spearman_with_default=float(spearmanr(studio, default).correlation),
        default_sd=float(default.std()),
        oracle_set_size=min(set_size, n_scripts),
        oracle_draws=draws,
        oracle_spearman_mean=float(np.mean(oracle)),
        oracle_spearman_sd=float(np.std(oracle)),
        oracle_spearman_quantiles=[float(q) for q in np.quantile(oracle, [0.1, 0.9])],
        set_oracle_spearman=float(set_oracle.correlation),
        anger_present=float((components["anger"] > 0).mean()),
        component_means={k: float(v.mean()) for k, v in components.items()},
        component_spearman_with_default={k: float(spearmanr(v, default).correlation) for k, v in components.items()},
        like_rate_quantiles=[float(q) for q in np.quantile(like, [0.1, 0.5, 0.9])],
        share_rate_quantiles=[float(q) for q in np.quantile(share, [0.1, 0.5, 0.9])],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data/studio"))
    parser.add_argument("--clips", type=int, default=60)
    parser.add_argument("--seed", type=int, default=None, help="set seed (default 7; 0 with --describe)")
    parser.add_argument("--duration", type=float, default=DURATION_S)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--describe", action="store_true", help="print the spread / Spearman / oracle numbers")
    parser.add_argument("--scripts", type=int, default=300, help="scripts --describe samples")
    args = parser.parse_args(argv)
    if args.describe:
        for key, value in describe_spread(args.scripts, 0 if args.seed is None else args.seed).items():
            print(f"{key}: {_fmt(value)}")
        return 0
    started = time.perf_counter()
    seed = 7 if args.seed is None else args.seed
    manifest = write_studio_set(args.out, args.clips, seed, args.duration, args.width, args.height, log=print)
    print(f"[studio] {args.clips} clips → {manifest} in {time.perf_counter() - started:.1f} s")
    return 0


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_fmt(v)}" for k, v in value.items())
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
