"""Train the engagement model on a studio's own clips and audience metrics (`facecast train engagement`).

    facecast train engagement --manifest clips.csv [--base weights/engagement-cpu.pt] [--out PATH] [--install]

The manifest is a CSV file, one row per clip (paths relative to the manifest's folder):

    path,views,likes,shares,watch_pct[,appeal_children,appeal_teens,appeal_young_adults,appeal_adults][,split]
    trailers/cut-a.mp4,120000,5400,800,61.5,,,,,
    trailers/cut-b.mp4,98000,3100,350,48.0,0.7,0.5,0.4,0.3,calib

How metrics become the model's targets (all in [0, 1], the same outputs the synthetic training uses):
  - engagement probability = watch_pct / 100 (the share of the clip an average viewer watched);
  - emotional resonance = the clip's like rate (likes / views) as a percentile rank within the manifest;
  - shareability = the share rate (shares / views) as a percentile rank within the manifest;
  - appeal per audience group = the `appeal_<group>` column when given (survey scores in [0, 1]), else the
    engagement probability (the model then learns no difference between groups from this manifest);
  - class low / medium / high = the manifest's tertiles of watch_pct (studios compare cuts against their own
    catalogue, not against an absolute scale).
  - `split` (optional): "calib" rows calibrate the intervals; the rest train. Without it, every fifth clip (by
    path hash) calibrates. At least 10 calibration clips are needed to recalibrate; with fewer, the base model's
    intervals are kept and the command says so.

Studio metrics carry no per-second signal, so the per-step curve is held where the synthetic training left it (its
target is the base model's own curve) while the clip-level heads fine-tune from the base weights. Each clip is
analysed through Triton (face_detector → tracking → expression_encoder) exactly as `facecast analyze` does, so the
model trains on the features it will see in serving.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from facecast.vocab import AUDIENCE_GROUPS

REQUIRED_COLUMNS = ("path", "views", "likes", "shares", "watch_pct")
MIN_CALIBRATION_CLIPS = 10


class StudioManifestError(ValueError):
    """The manifest cannot be used; the message names the row or column and what is wrong."""


def read_studio_manifest(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise StudioManifestError(f"{path}: cannot read the manifest as CSV ({error})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise StudioManifestError(
            f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(REQUIRED_COLUMNS)}"
        )
    if frame.empty:
        raise StudioManifestError(f"{path}: no clips listed")
    for column in ("views", "likes", "shares", "watch_pct"):
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = frame.index[values.isna() | (values < 0)].tolist()
        if bad:
            raise StudioManifestError(f"{path}: column {column} needs a non-negative number (rows {bad[:5]})")
        frame[column] = values
    if (frame["views"] <= 0).any():
        raise StudioManifestError(
            f"{path}: views must be positive (rows {frame.index[frame['views'] <= 0].tolist()[:5]})"
        )
    if (frame["watch_pct"] > 100).any():
        raise StudioManifestError(f"{path}: watch_pct is a percentage in [0, 100]")
    frame["path"] = [str((path.parent / p).resolve()) for p in frame["path"]]
    absent = [p for p in frame["path"] if not Path(p).is_file()]
    if absent:
        raise StudioManifestError(f"{path}: clip file(s) not found: {', '.join(absent[:5])}")
    return frame


def metrics_to_targets(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The documented mapping from audience metrics to the engagement model's targets."""
    engagement = (frame["watch_pct"].to_numpy(np.float64) / 100).clip(0, 1)
    like_rate = frame["likes"].to_numpy(np.float64) / frame["views"].to_numpy(np.float64)
    share_rate = frame["shares"].to_numpy(np.float64) / frame["views"].to_numpy(np.float64)
    appeal = np.stack(
        [
            pd.to_numeric(frame[f"appeal_{g}"], errors="coerce").fillna(pd.Series(engagement)).to_numpy(np.float64)
            if f"appeal_{g}" in frame.columns
            else engagement
            for g in AUDIENCE_GROUPS
        ],
        1,
    ).clip(0, 1)
    tertiles = np.quantile(engagement, [1 / 3, 2 / 3])
    return {
        "engagement": engagement.astype(np.float32),
        "resonance": _percentile_rank(like_rate).astype(np.float32),
        "shareability": _percentile_rank(share_rate).astype(np.float32),
        "appeal": appeal.astype(np.float32),
        "engagement_class": np.digitize(engagement, tertiles, right=False).astype(np.int64),
    }


def _percentile_rank(values: np.ndarray) -> np.ndarray:
    ranks = pd.Series(values).rank(method="average").to_numpy()
    return (ranks - 0.5) / len(values)


def calibration_rows(frame: pd.DataFrame) -> np.ndarray:
    if "split" in frame.columns:
        return frame["split"].astype(str).str.lower().eq("calib").to_numpy()
    return np.array([int(hashlib.sha256(p.encode()).hexdigest(), 16) % 5 == 0 for p in frame["path"]])


def analyse_clips(frame: pd.DataFrame, urls: list[str], log=print):
    """Every clip through the serving pipeline: (features, mask, steps, clip index) per 32-s window."""
    from facecast.clips.pipeline import ClipAnalyzer, window_inputs

    analyzer = ClipAnalyzer.for_urls(urls)
    features, masks, steps, owner = [], [], [], []
    for index, path in enumerate(frame["path"]):
        analysis = analyzer.analyze(path)
        if not analysis.observations:
            log(f"[studio] {path}: no faces found; left out of training")
            continue
        f, m, s = window_inputs(analysis.observations, analysis.report.clip.duration_s)
        features.append(f)
        masks.append(m)
        steps.append(s)
        owner += [index] * len(f)
        log(f"[studio] {Path(path).name}: {len(analysis.observations)} faces, {len(f)} window(s)")
    if not features:
        raise StudioManifestError("no clip of the manifest has a face the detector finds: nothing to train on")
    return np.concatenate(features), np.concatenate(masks), np.concatenate(steps), np.array(owner)


def train_studio_engagement(
    manifest: Path,
    out: Path,
    urls: list[str],
    base: Path,
    max_epochs: int = 30,
    time_budget_s: float = 600.0,
    log=print,
) -> dict:
    import torch

    from training.checkpoints import load_checkpoint, save_checkpoint
    from training.data.engagement_dataset import EngagementArrays
    from training.train_engagement import (
        EngagementTrainingOptions,
        calibrate,
        fit,
        interval_coverage,
        predict,
        validation_split,
    )

    frame = read_studio_manifest(manifest)
    targets = metrics_to_targets(frame)
    features, mask, steps, owner = analyse_clips(frame, urls, log)
    model = load_checkpoint(base)
    network_name = torch.load(base, map_location="cpu", weights_only=True)["network"]

    window_targets = {name: value[owner] for name, value in targets.items()}
    arrays = EngagementArrays(
        features=features.astype(np.float16),
        mask=mask.astype(bool),
        steps=steps,
        targets=window_targets,
        oracle=window_targets,
        clip_id=owner.astype(np.int64),
        seed=np.zeros(len(owner), np.int64),
        n_characters=mask.any(2).sum(1),
        style=np.array(["studio"] * len(owner)),
    )
    # No per-second signal in audience metrics: the curve's target is the base model's own curve.
    arrays.targets["curve"] = predict(model, arrays)["curve"].astype(np.float32)

    is_calib = calibration_rows(frame)[owner]
    train_all = arrays.subset(np.flatnonzero(~is_calib))
    calib = arrays.subset(np.flatnonzero(is_calib))
    if len(train_all) < 2:
        raise StudioManifestError(f"{manifest}: need at least 2 training clips with faces, got {len(train_all)}")
    options = replace(
        EngagementTrainingOptions(network=network_name),
        curve_epochs=0,
        max_epochs=max_epochs,
        time_budget_s=time_budget_s,
        patience=5,
        batch_size=min(32, max(2, len(train_all) // 2)),
    )
    train_index, val_index = validation_split(len(train_all), 0.2, options.seed)
    if len(val_index) == 0:
        val_index = train_index
    summary = fit(model, train_all.subset(train_index), train_all.subset(val_index), options, log=log)
    notes = []
    if len(np.unique(calib.clip_id)) >= MIN_CALIBRATION_CLIPS:
        calibrate(model, calib)
        summary["calib_coverage"] = interval_coverage(model, calib)
    else:
        notes.append(
            f"only {len(np.unique(calib.clip_id))} calibration clip(s) (< {MIN_CALIBRATION_CLIPS}): the "
            "base model's intervals are kept"
        )
        log("[studio] " + notes[-1])
    save_checkpoint(
        model,
        network_name,
        out,
        studio_manifest=str(manifest),
        clips=int(len(frame)),
        windows=int(len(owner)),
        notes=notes,
    )
    summary.update({"out": str(out), "clips": int(len(frame)), "windows": int(len(owner)), "notes": notes})
    log(f"[studio] fine-tuned {network_name} on {len(np.unique(train_all.clip_id))} clip(s) → {out}")
    return summary
