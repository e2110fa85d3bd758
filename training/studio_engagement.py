"""Calibrate the engagement model on a studio's own clips and audience metrics, and say honestly whether it helps.

    facecast train engagement --manifest clips.csv [--base weights/engagement-cpu.pt] [--out PATH] [--install]

The manifest (facecast.calibration.manifest: its columns, the row checks and the documented metric → target mapping)
names each clip and its metrics. Each clip's faces come from its stored analysis when it was analysed before, else
the clip is analysed through Triton exactly as `facecast analyze` does (and stored), so the model trains on the
features it will see in serving.

What a calibration is: the shipped network with its studio layer switched on (training/networks/engagement.py,
StudioLayer). Each clip-level output (engagement, resonance, shareability, appeal per group) is re-predicted by a
ridge regression on pooled statistics of the clip's input features and the shipped model's own logit, its penalty
chosen by leave-one-out; the class comes from the calibrated engagement against the studio's tertiles. Fine-tuning
the whole network on a studio's clips was measured first and generalised worse with the tens of clips a studio has
(docs/results-engagement.md, "Calibrating on a studio's audience").

What runs, in order:
1. **Cross-validation** (`cross_validate`): the clips are split into up to 5 folds; for each, the layer is fitted on
   the other folds and predicts the held-out ones. Every clip thus gets a prediction from a calibration that never
   saw it, compared with the default model's prediction: Spearman rank correlation with watch_pct, accuracy of the
   low / medium / high class (the manifest's tertiles), and the coverage of 90 % intervals.
2. **The verdict** (`verdict`): a calibrated model may serve only when at least MIN_CLIPS_TO_ACTIVATE clips have
   faces and the held-out Spearman gain over the default is positive across a paired bootstrap over clips (the
   5th percentile of the gain above 0). Otherwise the report says why, and the version is recorded as not
   activatable.
3. **The final model**: the layer fitted on every clip; its intervals are split-conformal on the cross-validation's
   held-out residuals (each clip's residual comes from a calibration that did not see it), the curve's are the
   shipped model's (audience metrics carry no per-second signal, so the curve is the shipped model's).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from facecast.calibration.manifest import check_manifest, file_resolver, safe_file_name, targets

MIN_CLIPS_TO_ACTIVATE = 12
FOLDS = 5
BOOTSTRAP_SAMPLES = 2000
Progress = Callable[[str, float, str], None]  # (stage, fraction of that stage done, what is happening)


class StudioManifestError(ValueError):
    """The manifest cannot be used; the message lists every bad row and what is wrong with it."""


@dataclass(frozen=True)
class StoredClip:
    """A manifest row whose clip was analysed before: its faces are read from the store, nothing is decoded."""

    analysis_id: int
    name: str


def read_studio_manifest(path: str | Path, resolve: Callable[[str], object | None] | None = None):
    """(clean rows, per-row clip source) of a manifest, or StudioManifestError naming every problem. `resolve`
    finds a row's clip (default: files relative to the manifest's folder)."""
    path = Path(path)
    checked = check_manifest(path, resolve or file_resolver(path.parent))
    if not checked.ok:
        raise StudioManifestError(f"{path}: " + "; ".join(checked.problems))
    return checked.frame, checked.sources


def clip_features(
    sources: list,
    urls: list[str],
    store=None,
    progress: Progress | None = None,
    log=print,
    analysed_by: str = "calibration",
):
    """Every clip's engagement-model inputs, window by window: (features, mask, steps, clip row per window).
    Stored analyses are read from `store`; files are analysed through Triton (and stored, when a store is given)."""
    from facecast.clips.pipeline import ClipAnalyzer, file_sha256, window_inputs
    from facecast.clips.rescore import observations_from_faces

    analyzer = None
    features, masks, steps, owner = [], [], [], []
    for index, source in enumerate(sources):
        if isinstance(source, StoredClip):
            stored = store.analyses.get(source.analysis_id)
            observations = observations_from_faces(store.analyses.faces(source.analysis_id))
            duration = _stored_duration(stored)
            name = source.name
        else:
            analyzer = analyzer or ClipAnalyzer.for_urls(urls)
            engagement_model = store.engagement_models.active().provenance if store is not None else None
            name = Path(source).name
            digest = file_sha256(Path(source))
            fingerprint = analyzer.fingerprint((engagement_model or {}).get("version", 1))
            stored = store.analyses.find(digest, fingerprint) if store is not None else None
            if stored is not None:  # this content was analysed before (History): its faces are what is needed
                observations = observations_from_faces(store.analyses.faces(stored.id))
                duration = _stored_duration(stored)
            else:
                analysis = analyzer.analyze(source, sha256=digest, engagement_model=engagement_model)
                if store is not None:
                    store.analyses.add(analysis.record(analysed_by=analysed_by))
                observations, duration = analysis.observations, analysis.report.clip.duration_s
        if progress:
            progress("clips", (index + 1) / len(sources), f"read the faces of {name}")
        if not observations:
            log(f"[studio] {name}: no faces found; left out")
            continue
        f, m, s = window_inputs(observations, duration)
        features.append(f)
        masks.append(m)
        steps.append(s)
        owner += [index] * len(f)
    if not features:
        raise StudioManifestError("no clip of the manifest has a face the detector finds: nothing to learn from")
    return np.concatenate(features), np.concatenate(masks), np.concatenate(steps), np.array(owner)


def _stored_duration(stored) -> float:
    import json

    return float(json.loads(stored.report_json)["clip"]["duration_s"])


def studio_arrays(frame: pd.DataFrame, features, mask, steps, owner, base_model):
    """EngagementArrays of the studio's windows (one row per 32-s window, each with its clip's targets)."""
    from training.data.engagement_dataset import EngagementArrays
    from training.train_engagement import predict

    clip_targets = targets(frame)
    window_targets = {name: value[owner] for name, value in clip_targets.items()}
    arrays = EngagementArrays(
        features=features.astype(np.float16),
        mask=mask.astype(bool),
        steps=steps,
        targets=window_targets,
        oracle=window_targets,  # a studio has no noise-free truth: its metrics are all there is
        clip_id=owner.astype(np.int64),
        seed=np.zeros(len(owner), np.int64),
        n_characters=mask.any(2).sum(1),
        style=np.array(["studio"] * len(owner)),
    )
    # No per-second signal in audience metrics: the curve's target is the shipped model's own curve.
    arrays.targets["curve"] = predict(base_model, arrays)["curve"].astype(np.float32)
    return arrays


# leave-one-out picks one per output; the largest shrink an output toward the studio's average when the clips say little
RIDGE_ALPHAS = np.logspace(-2, 4, 25)


def window_statistics(arrays) -> np.ndarray:
    """The studio layer's inputs for every window, computed by the same code the served graph runs."""
    import torch

    from training.networks.engagement import pooled_statistics

    features = torch.from_numpy(arrays.features.astype(np.float32))
    mask = torch.from_numpy(arrays.mask.astype(np.float32))
    with torch.no_grad():
        return pooled_statistics(features * mask.unsqueeze(-1), mask).numpy().astype(np.float64)


def studio_output_logits(outputs: dict) -> np.ndarray:
    """[N, STUDIO_OUTPUTS] logits in the studio layer's order (scalars, then appeal per group) from predictions or
    targets."""
    from facecast.engagement_features import to_logit

    scalars = [to_logit(np.asarray(outputs[name], np.float64).reshape(-1)) for name in SCALARS]
    return np.column_stack([*scalars, to_logit(np.asarray(outputs["appeal"], np.float64))])


SCALARS = ("engagement", "resonance", "shareability")


def fit_studio_layer(base_model, arrays, residual_sd: float | None = None):
    """A copy of the shipped model with its studio layer fitted on `arrays` (module docstring). `residual_sd`: the
    spread of engagement logit errors that sets how sharply the class follows the engagement (in-sample if None)."""
    import torch
    from sklearn.linear_model import RidgeCV

    from facecast.engagement_features import to_logit
    from training.train_engagement import predict

    model = copy.deepcopy(base_model)
    statistics = window_statistics(arrays)
    base = studio_output_logits(predict(base_model, arrays))
    wanted = studio_output_logits(arrays.targets)
    weight = np.zeros((base.shape[1], statistics.shape[1]))
    base_weight, bias, fitted = np.zeros(base.shape[1]), np.zeros(base.shape[1]), np.zeros_like(base)
    for k in range(base.shape[1]):
        design = np.column_stack([statistics, base[:, k]])
        centre, scale = design.mean(0), design.std(0)
        scale[scale < 1e-9] = 1.0  # a constant column carries nothing; its coefficient stays 0
        ridge = RidgeCV(alphas=RIDGE_ALPHAS).fit((design - centre) / scale, wanted[:, k])
        coefficients = ridge.coef_ / scale
        weight[k], base_weight[k] = coefficients[:-1], coefficients[-1]
        bias[k] = ridge.intercept_ - coefficients @ centre
        fitted[:, k] = design @ coefficients + bias[k]
    clip_rows = np.array([np.flatnonzero(arrays.clip_id == c)[0] for c in np.unique(arrays.clip_id)])
    thresholds = np.quantile(to_logit(arrays.targets["engagement"][clip_rows]), [1 / 3, 2 / 3])
    spread = residual_sd if residual_sd is not None else float(np.std(fitted[:, 0] - wanted[:, 0]))
    layer = model.studio
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(weight.astype(np.float32)))
        layer.base_weight.copy_(torch.from_numpy(base_weight.astype(np.float32)))
        layer.bias.copy_(torch.from_numpy(bias.astype(np.float32)))
        layer.class_thresholds.copy_(torch.from_numpy(thresholds.astype(np.float32)))
        # a logistic with the errors' spread: σ(π / (√3 · sd) · (z − threshold))
        layer.class_slope.fill_(math.pi / (math.sqrt(3) * max(spread, 0.05)))
        layer.enabled.fill_(1.0)
    return model.eval()


def per_clip(predictions: dict, arrays) -> dict[str, np.ndarray]:
    """Window predictions → one per clip (weighted by each window's observed steps, as serving combines them)."""
    clips = np.unique(arrays.clip_id)
    weights = arrays.mask.any(1).sum(1).astype(np.float64) + 1e-9
    result = {}
    for name in ("engagement", "class_probs"):
        values = predictions[name]
        result[name] = np.stack(
            [np.average(values[arrays.clip_id == c], axis=0, weights=weights[arrays.clip_id == c]) for c in clips]
        )
    result["clip"] = clips
    return result


def cross_validate(base_model, arrays, folds: int = FOLDS, seed: int = 0, progress: Progress | None = None):
    """Held-out predictions for every window from calibrations fitted without its clip: (validation report,
    held-out window predictions)."""
    from training.train_engagement import predict

    clips = np.unique(arrays.clip_id)
    order = np.random.default_rng(seed).permutation(len(clips))
    fold_of = {int(clips[i]): k % min(folds, len(clips)) for k, i in enumerate(order)}
    window_fold = np.array([fold_of[int(c)] for c in arrays.clip_id])
    held_out: dict[str, np.ndarray] = {}
    n_folds = min(folds, len(clips))
    for fold in range(n_folds):
        if progress:
            progress("validate", fold / n_folds, f"cross-validation: calibrating without fold {fold + 1} of {n_folds}")
        model = fit_studio_layer(base_model, arrays.subset(np.flatnonzero(window_fold != fold)))
        inside = np.flatnonzero(window_fold == fold)
        for name, value in predict(model, arrays.subset(inside)).items():
            held_out.setdefault(name, np.zeros((len(arrays), *value.shape[1:]), value.dtype))[inside] = value
    if progress:
        progress("validate", 1.0, "cross-validation done")
    default = predict(base_model, arrays)
    base_halfwidth = float(base_model.interval_logit_halfwidth.numpy()[0])
    return validation_report(default, held_out, arrays, base_halfwidth, seed), held_out


def validation_report(default: dict, calibrated: dict, arrays, base_halfwidth: float, seed: int = 0) -> dict:
    """Default vs calibrated on the studio's clips: Spearman with watch_pct, class accuracy, 90 % coverage."""
    from scipy.stats import spearmanr

    from facecast.engagement_features import to_logit
    from training.train_engagement import conformal_quantile

    d, c = per_clip(default, arrays), per_clip(calibrated, arrays)
    first = np.array([np.flatnonzero(arrays.clip_id == clip)[0] for clip in d["clip"]])
    observed = arrays.targets["engagement"][first]
    classes = arrays.targets["engagement_class"][first]
    n = len(observed)

    def rho(predicted: np.ndarray, index: np.ndarray) -> float:
        if np.ptp(predicted[index]) == 0 or np.ptp(observed[index]) == 0:
            return 0.0  # no ranking at all (a calibration shrunk to a constant, a resample of one clip)
        value = spearmanr(predicted[index], observed[index]).statistic
        return 0.0 if not np.isfinite(value) else float(value)

    every = np.arange(n)
    rng = np.random.default_rng(seed)
    gains = []
    for _ in range(BOOTSTRAP_SAMPLES if n >= 3 else 0):
        sample = rng.integers(0, n, n)
        gains.append(rho(c["engagement"], sample) - rho(d["engagement"], sample))
    low, high = np.percentile(gains, [5, 95]) if gains else (-math.inf, math.inf)
    residual_default = np.abs(to_logit(d["engagement"]) - to_logit(observed))
    residual_calibrated = np.abs(to_logit(c["engagement"]) - to_logit(observed))
    # each clip's interval from the other clips' held-out residuals (leave-one-out split-conformal)
    covered = [residual_calibrated[i] <= conformal_quantile(np.delete(residual_calibrated, i)) for i in range(n)]
    return {
        "clips": n,
        "folds": int(min(FOLDS, n)),
        "default": {
            "spearman": rho(d["engagement"], every),
            "class_accuracy": float(np.mean(np.argmax(d["class_probs"], 1) == classes)),
            "coverage": float(np.mean(residual_default <= base_halfwidth)),
        },
        "calibrated": {
            "spearman": rho(c["engagement"], every),
            "class_accuracy": float(np.mean(np.argmax(c["class_probs"], 1) == classes)),
            "coverage": float(np.mean(covered)) if n > 1 else 0.0,
        },
        "spearman_gain_interval": [float(low), float(high)],
        "per_clip": {
            "clip_row": d["clip"].tolist(),
            "observed": observed.round(4).tolist(),
            "default": d["engagement"].round(4).tolist(),
            "calibrated": c["engagement"].round(4).tolist(),
        },
    }


def verdict(report: dict) -> tuple[bool, str]:
    """(may it serve, the plain statement shown with the validation)."""
    n, default, calibrated = report["clips"], report["default"], report["calibrated"]
    low, high = report["spearman_gain_interval"]
    scores = (
        f"held-out Spearman with watch_pct {calibrated['spearman']:.2f} for the calibrated model vs "
        f"{default['spearman']:.2f} for the default"
    )
    if n < MIN_CLIPS_TO_ACTIVATE:
        return False, (
            f"Only {n} clip{'s' if n != 1 else ''} with faces: too few to show that a calibrated model beats the "
            f"default (at least {MIN_CLIPS_TO_ACTIVATE} are needed). It is not offered for activation; the default "
            "stays."
        )
    if low <= 0:
        return False, (
            f"On your {n} clips, {scores}: the gain is within what chance gives (90 % interval {low:+.2f} to "
            f"{high:+.2f}), so the calibrated model is not offered for activation. More clips, or clips that differ "
            "more in audience response, may change that."
        )
    return True, (
        f"On your {n} clips, each predicted by a model that did not train on it, {scores} (gain {low:+.2f} to "
        f"{high:+.2f}, 90 % interval). The calibrated model ranks your audience's response better: it can be "
        "activated."
    )


def studio_halfwidths(base_model, held_out: dict, arrays) -> np.ndarray:
    """The final model's logit half-widths: split-conformal on the held-out residuals, the curve's kept."""
    from facecast.engagement_features import INTERVAL_ORDER
    from training.train_engagement import calibrated_residuals, conformal_quantile

    residuals = calibrated_residuals(held_out, arrays)
    halfwidth = base_model.interval_logit_halfwidth.numpy().copy()
    for index, name in enumerate(INTERVAL_ORDER):
        if name != "curve":
            halfwidth[index] = min(conformal_quantile(residuals[name]), 20.0)
    return halfwidth


def train_studio_engagement(
    manifest: Path,
    out: Path,
    urls: list[str],
    base: Path,
    *,
    store=None,
    clips_dir: Path | None = None,
    analysed_by: str = "calibration",
    progress: Progress | None = None,
    log=print,
) -> dict:
    """Validate and calibrate (module docstring); writes the final weights to `out` and returns the summary, including
    the validation report, the verdict and the model card's training summary."""
    import torch

    from facecast.engagement_features import to_logit
    from training.checkpoints import load_checkpoint, save_checkpoint

    frame, sources = read_studio_manifest(manifest, _store_resolver(store, clips_dir or Path(manifest).parent))
    base_model = load_checkpoint(base)
    network_name = torch.load(base, map_location="cpu", weights_only=True)["network"]
    features, mask, steps, owner = clip_features(sources, urls, store, progress, log, analysed_by)
    arrays = studio_arrays(frame, features, mask, steps, owner, base_model)
    n_clips = len(np.unique(owner))
    report, held_out = cross_validate(base_model, arrays, progress=progress)
    activatable, statement = verdict(report)
    log(f"[studio] {statement}")
    if progress:
        progress("train", 0.0, f"calibrating on all {n_clips} clips")
    errors = to_logit(held_out["engagement"]) - to_logit(arrays.targets["engagement"])
    model = fit_studio_layer(base_model, arrays, residual_sd=float(np.std(errors)) if n_clips > 2 else None)
    model.interval_logit_halfwidth.copy_(torch.from_numpy(studio_halfwidths(base_model, held_out, arrays)))
    training = {
        "manifest": Path(manifest).name,
        "clips_listed": int(len(frame)),
        "clips_with_faces": int(n_clips),
        "windows": int(len(owner)),
        "watch_pct": {
            "min": float(frame["watch_pct"].min()),
            "median": float(frame["watch_pct"].median()),
            "max": float(frame["watch_pct"].max()),
        },
        "base": Path(base).name,
        "weights": str(out),  # for the GPU flavour: export.triton_repository --flavour gpu --add-version N
        "date": date.today().isoformat(),
    }
    save_checkpoint(model, network_name, out, studio=training)
    if progress:
        progress("train", 1.0, f"weights written to {out}")
    return {
        "out": str(out),
        "clips": int(len(frame)),
        "windows": int(len(owner)),
        "training": training,
        "validation": {**report, "statement": statement},
        "activatable": activatable,
        "description": f"calibrated on {n_clips} studio clips, {training['date']}",
    }


def _store_resolver(store, folder: Path) -> Callable[[str], object | None]:
    """A row's clip: a file in `folder` (next to the manifest, or where the Calibrate page saved the uploads), else a
    clip analysed in History under that name (its newest analysis)."""
    files = file_resolver(folder)
    analysed: dict[str, int] = {}
    if store is not None:
        for row in store.analyses.newest(limit=None).itertuples():
            analysed.setdefault(str(row.name), int(row.id))

    def resolve(path: str) -> object | None:
        found = files(path) or files(safe_file_name(path))  # the Calibrate page saves uploads under safe names
        if found is not None:
            return found
        return StoredClip(analysed[path], path) if path in analysed else None

    return resolve
