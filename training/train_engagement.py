"""Train the engagement network progressively, then calibrate its intervals (split conformal, 90 %).

    python -m training.train_engagement --data data/clips --out runs/engagement-cpu \\
        [--weights weights/engagement-cpu.pt]

Progressive training (seed 000 §4.2):
  stage 1 — the expression encoder, trained on stills and frozen (its outputs are the features: data built by
            training/data/engagement_dataset.py);
  stage 2 — the temporal stream (input projection, BiLSTM, character attention and pooling) and the curve head learn
            the per-step engagement curve alone, the transformer fusion held at its initialisation;
  stage 3 — everything jointly on the multi-task loss: Adam, lr 1e-3 for the input/BiLSTM stream and the heads,
            5e-4 for the transformer fusion (temporal and character attention), batch 32, early stopping on the
            validation loss (validation: 15 % of the train split's clips, never calib or test).
Multi-task loss: BCE (soft targets) for engagement, resonance, shareability and the four appeals; cross-entropy for
the class; MSE for the curve over the clip's steps plus a smoothness penalty on its step-to-step changes.
Calibration: the absolute residuals of each output's logit on the calib split give the split-conformal half-width at
90 % (the ⌈(n+1)·0.9⌉-th smallest), stored in the network's `interval_logit_halfwidth` buffer (curve: over all clip
steps; engagement_lead: over pairs of clips, against the noise-free truth: CALIBRATED_AGAINST). In logit space because
every output is a logistic function of a logit and its errors are even there, not on the probability: an interval ±w
on the probability would be too wide for clips the model places near 0 or 1 and too narrow in the middle.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from facecast.engagement_features import INTERVAL_ORDER, to_logit
from training.checkpoints import save_checkpoint
from training.data.engagement_dataset import EngagementArrays, load_engagement_split
from training.networks import get_config
from training.networks.engagement import (
    SCALAR_OUTPUTS,
    EngagementEnsemble,
    EngagementEnsembleConfig,
    EngagementNetwork,
    build_engagement,
)

LOSS_WEIGHTS = {"scalars": 1.0, "appeal": 1.0, "class": 0.5, "curve": 5.0, "smoothness": 1.0}
FUSION_PREFIXES = ("temporal_fusion", "fusion_norm", "character_attention")  # the transformer modules (lr 5e-4)
CURVE_STAGE_PREFIXES = (
    "input_projection",
    "step_mlp",
    "lstm",
    "lstm_norm",
    "character_attention",
    "character_pool",
    "curve_smoother",
    "curve_head",
)
COVERAGE = 0.9


@dataclass
class EngagementTrainingOptions:
    network: str = "engagement-cpu"
    batch_size: int = 32
    stream_lr: float = 1e-3
    fusion_lr: float = 5e-4
    weight_decay: float = 1e-4
    curve_epochs: int = 4  # stage 2
    max_epochs: int = 40  # stage 3
    patience: int = 6
    val_fraction: float = 0.15
    seed: int = 0
    threads: int = 1
    time_budget_s: float = 8 * 60


# -- batches ---------------------------------------------------------------------------------------------------
def batch_tensors(arrays: EngagementArrays, index: np.ndarray) -> dict[str, torch.Tensor]:
    """Tensors for clips `index`, cut to the longest clip and the last present character among them (the network
    takes any length and character count; empty slots change nothing, tests/test_engagement_model.py)."""
    length = int(max(1, arrays.steps[index].max()))
    present = arrays.mask[index].any(2)
    characters = int(max(1, (present.shape[1] - np.argmax(present[:, ::-1], 1))[present.any(1)].max(initial=1)))
    steps = torch.from_numpy(arrays.steps[index])
    batch = {
        "features": torch.from_numpy(arrays.features[index, :characters, :length].astype(np.float32)),
        "mask": torch.from_numpy(arrays.mask[index, :characters, :length].astype(np.float32)),
        "step_valid": (torch.arange(length)[None, :] < steps[:, None]).float(),
    }
    for name, value in arrays.targets.items():
        value = value[index]
        batch[name] = torch.from_numpy(value[:, :length] if name == "curve" else value)
    return batch


def engagement_loss(outputs: dict, batch: dict) -> tuple[torch.Tensor, dict]:
    scalar_targets = torch.stack([batch[name].float() for name in SCALAR_OUTPUTS], 1)
    scalars = F.binary_cross_entropy_with_logits(outputs["scalar_logits"], scalar_targets)
    appeal = F.binary_cross_entropy_with_logits(outputs["appeal_logits"], batch["appeal"].float())
    klass = F.cross_entropy(outputs["class_logits"], batch["engagement_class"].long())
    valid = batch["step_valid"]
    curve = ((outputs["curve"] - batch["curve"].float()) ** 2 * valid).sum() / valid.sum().clamp_min(1)
    pair_valid = valid[:, 1:] * valid[:, :-1]
    change = outputs["curve"][:, 1:] - outputs["curve"][:, :-1]
    smoothness = (change**2 * pair_valid).sum() / pair_valid.sum().clamp_min(1)
    parts = {"scalars": scalars, "appeal": appeal, "class": klass, "curve": curve, "smoothness": smoothness}
    total = sum(LOSS_WEIGHTS[name] * value for name, value in parts.items())
    return total, {name: float(value.detach()) for name, value in parts.items()}


def curve_loss(outputs: dict, batch: dict) -> torch.Tensor:
    valid = batch["step_valid"]
    return ((outputs["curve"] - batch["curve"].float()) ** 2 * valid).sum() / valid.sum().clamp_min(1)


@torch.no_grad()
def predict(model: EngagementNetwork, arrays: EngagementArrays, batch_size: int = 128) -> dict[str, np.ndarray]:
    """Numpy outputs for every clip (curve and moment weights padded to MAX_STEPS with zeros)."""
    model.eval()
    collected: dict[str, list[np.ndarray]] = {}
    total_steps = arrays.features.shape[2]
    for start in range(0, len(arrays), batch_size):
        index = np.arange(start, min(start + batch_size, len(arrays)))
        batch = batch_tensors(arrays, index)
        outputs = model(batch["features"], batch["mask"])
        for name in ("curve", "moment_weights"):
            outputs[name] = F.pad(outputs[name], (0, total_steps - outputs[name].shape[1]))
        outputs["class_probs"] = torch.softmax(outputs["class_logits"], 1)
        for name in ("engagement", "resonance", "shareability", "appeal", "class_probs", "curve", "moment_weights"):
            collected.setdefault(name, []).append(outputs[name].numpy())
    result = {name: np.concatenate(parts) for name, parts in collected.items()}
    for name in SCALAR_OUTPUTS:
        result[name] = result[name][:, 0]
    return result


@torch.no_grad()
def validation_loss(model: EngagementNetwork, arrays: EngagementArrays, batch_size: int = 128) -> float:
    model.eval()
    total = 0.0
    for start in range(0, len(arrays), batch_size):
        index = np.arange(start, min(start + batch_size, len(arrays)))
        batch = batch_tensors(arrays, index)
        loss, _ = engagement_loss(model(batch["features"], batch["mask"]), batch)
        total += float(loss) * len(index)
    return total / max(1, len(arrays))


def validation_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A slice of the clips for early stopping (by clip, so no clip is on both sides)."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(n * fraction)))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def length_buckets(arrays: EngagementArrays, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of clips with similar character counts and lengths.

    Batches are cut to their longest clip and their last present character (batch_tensors), so grouping alike
    clips halves the padded cells the BiLSTM and attention run over. The sort key carries noise so batches differ
    from epoch to epoch; the batch order is random."""
    characters = _present_characters(arrays)
    key = characters * 1000 + arrays.steps + rng.uniform(0, 24, len(arrays))
    order = np.argsort(key, kind="stable")
    batches = [np.sort(order[i : i + batch_size]) for i in range(0, len(order), batch_size)]
    batches = [b for b in batches if len(b) >= max(2, batch_size // 4)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _present_characters(arrays: EngagementArrays) -> np.ndarray:
    """Per clip: 1 + the index of the last character slot with any observation (0 for an empty clip)."""
    present = arrays.mask.any(2)
    return np.where(present.any(1), present.shape[1] - np.argmax(present[:, ::-1], 1), 0)


def _epochs(model, arrays: EngagementArrays, optimizer, loss_fn, batch_size: int, rng: np.random.Generator):
    model.train()
    total, batches = 0.0, 0
    for index in length_buckets(arrays, batch_size, rng):
        batch = batch_tensors(arrays, index)
        outputs = model(batch["features"], batch["mask"])
        loss = loss_fn(outputs, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        total += float(loss.detach())
        batches += 1
    return total / max(1, batches)


def _module_of(parameter: str) -> str:
    """The network module a parameter belongs to ("lstm.weight_hh_l0" → "lstm"), inside an ensemble member too
    ("members.1.lstm.weight_hh_l0" → "lstm")."""
    parts = parameter.split(".")
    return parts[2] if parts[0] == "members" else parts[0]


def fit(
    model: EngagementNetwork | EngagementEnsemble,
    train: EngagementArrays,
    val: EngagementArrays,
    options: EngagementTrainingOptions,
    log=print,
) -> dict:
    """Stages 2 and 3 on `train`, early stopping on `val`; leaves the best weights in `model`; returns a summary."""
    started = time.monotonic()
    torch.manual_seed(options.seed)
    rng = np.random.default_rng(options.seed)
    history = []

    # stage 2: the temporal stream and the curve head on the curve alone
    curve_params = [p for n, p in model.named_parameters() if _module_of(n) in CURVE_STAGE_PREFIXES]
    optimizer = torch.optim.Adam(curve_params, lr=options.stream_lr)
    for epoch in range(1, options.curve_epochs + 1):
        loss = _epochs(model, train, optimizer, curve_loss, options.batch_size, rng)
        history.append({"stage": 2, "epoch": epoch, "train_curve_loss": loss})
        log(f"[engagement] stage 2 epoch {epoch}: curve loss {loss:.4f}")

    # stage 3: joint, two learning rates
    fusion = [p for n, p in model.named_parameters() if _module_of(n) in FUSION_PREFIXES]
    stream = [p for n, p in model.named_parameters() if _module_of(n) not in FUSION_PREFIXES]
    groups = [{"params": stream, "lr": options.stream_lr}]
    if fusion:
        groups.append({"params": fusion, "lr": options.fusion_lr})
    optimizer = torch.optim.Adam(groups, weight_decay=options.weight_decay)
    best_loss, best_state, best_epoch, since_best = math.inf, copy.deepcopy(model.state_dict()), 0, 0
    stop_reason = "completed all epochs"
    epoch_seconds = 0.0
    for epoch in range(1, options.max_epochs + 1):
        if time.monotonic() - started + epoch_seconds > options.time_budget_s:
            stop_reason = f"time budget of {options.time_budget_s:.0f} s reached"
            break
        epoch_start = time.monotonic()
        train_loss = _epochs(model, train, optimizer, lambda o, b: engagement_loss(o, b)[0], options.batch_size, rng)
        val_loss = validation_loss(model, val)
        epoch_seconds = time.monotonic() - epoch_start
        history.append(
            {"stage": 3, "epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "seconds": epoch_seconds}
        )
        log(f"[engagement] stage 3 epoch {epoch}: loss {train_loss:.4f} val {val_loss:.4f} ({epoch_seconds:.1f} s)")
        if val_loss < best_loss - 1e-5:
            best_loss, best_state, best_epoch, since_best = val_loss, copy.deepcopy(model.state_dict()), epoch, 0
        else:
            since_best += 1
            if since_best >= options.patience:
                stop_reason = f"early stop: no validation improvement for {options.patience} epochs"
                break
    model.load_state_dict(best_state)
    model.eval()
    return {
        "best_epoch": best_epoch,
        "best_val_loss": best_loss,
        "stop_reason": stop_reason,
        "history": history,
        "seconds": time.monotonic() - started,
    }


# -- conformal calibration -------------------------------------------------------------------------------------
def conformal_quantile(residuals: np.ndarray, coverage: float = COVERAGE) -> float:
    """Split-conformal half-width: the ⌈(n+1)·coverage⌉-th smallest absolute residual (∞ if n is too small)."""
    residuals = np.sort(np.abs(np.asarray(residuals, np.float64)).ravel())
    rank = int(math.ceil((len(residuals) + 1) * coverage))
    return float(residuals[rank - 1]) if rank <= len(residuals) else math.inf


def interval_residuals(predictions: dict, arrays: EngagementArrays, against: str = "targets") -> dict[str, np.ndarray]:
    """Absolute residuals in logit space per INTERVAL_ORDER name against the observed targets (`against="targets"`)
    or the noise-free truth (`"oracle"`; studio data has none, its oracle is its targets). Curve: every step of
    every clip; engagement_lead: the difference of two clips' engagement logits, over every pair of clips."""
    reference = getattr(arrays, against)
    residuals = {name: np.abs(to_logit(predictions[name]) - to_logit(reference[name])) for name in SCALAR_OUTPUTS}
    for index, group in enumerate(INTERVAL_ORDER[3:7]):
        residuals[group] = np.abs(to_logit(predictions["appeal"][:, index]) - to_logit(reference["appeal"][:, index]))
    valid = np.arange(reference["curve"].shape[1])[None, :] < arrays.steps[:, None]
    residuals["curve"] = np.abs(to_logit(predictions["curve"]) - to_logit(reference["curve"]))[valid]
    residuals["engagement_lead"] = pair_residuals(
        to_logit(predictions["engagement"]), to_logit(reference["engagement"])
    )
    return residuals


def pair_residuals(predicted: np.ndarray, observed: np.ndarray, max_clips: int = 2000) -> np.ndarray:
    """|(ẑ_i − ẑ_j) − (z_i − z_j)| over every pair i < j: how far a predicted lead of one clip over another can be
    from the observed one. (Pairs share clips, so the conformal guarantee is approximate; the test split checks it.)
    Above `max_clips` clips, a seeded sample of that many: the pairs grow with the square of the clips."""
    error = predicted - observed
    if len(error) > max_clips:
        error = error[np.random.default_rng(0).choice(len(error), max_clips, replace=False)]
    i, j = np.triu_indices(len(error), 1)
    return np.abs(error[i] - error[j])


# What each half-width is calibrated against. An interval around one clip's score covers what one audience would
# report (the observed, noisy label); the lead margin answers "is this cut more engaging than that one", a question
# about the audience's expected response, so on synthetic clips it is calibrated against the noise-free truth (two
# labels' noise would otherwise widen it by √2 · 0.6 logits). Studio clips have no truth: there it is their labels.
CALIBRATED_AGAINST = {name: "oracle" if name == "engagement_lead" else "targets" for name in INTERVAL_ORDER}


def calibrated_residuals(
    predictions: dict, arrays: EngagementArrays, against: str | None = None
) -> dict[str, np.ndarray]:
    """interval_residuals per INTERVAL_ORDER name against what each is calibrated for (CALIBRATED_AGAINST), or all
    against `against` ("targets" or "oracle")."""
    references = {against} if against else set(CALIBRATED_AGAINST.values())
    by_reference = {ref: interval_residuals(predictions, arrays, ref) for ref in references}
    return {name: by_reference[against or CALIBRATED_AGAINST[name]][name] for name in INTERVAL_ORDER}


def calibrate(model: EngagementNetwork, calib: EngagementArrays, coverage: float = COVERAGE) -> np.ndarray:
    """Set and return the model's `interval_logit_halfwidth` buffer from the calibration split."""
    residuals = calibrated_residuals(predict(model, calib), calib)
    halfwidth = np.array([conformal_quantile(residuals[name], coverage) for name in INTERVAL_ORDER], np.float32)
    # an infinite width (too few clips for the coverage) is stored as a logit of 20: every interval is [0, 1]
    model.interval_logit_halfwidth.copy_(torch.from_numpy(np.minimum(halfwidth, 20.0)))
    return halfwidth


def interval_coverage(
    model: EngagementNetwork, arrays: EngagementArrays, against: str | None = None, predictions: dict | None = None
) -> dict[str, float]:
    """Fraction of targets inside the stored logit interval, per INTERVAL_ORDER name (`against` as in
    calibrated_residuals). `predictions`: the model's on `arrays`, when the caller has them already."""
    predictions = predict(model, arrays) if predictions is None else predictions
    residuals = calibrated_residuals(predictions, arrays, against)
    halfwidth = model.interval_logit_halfwidth.numpy()
    return {name: float((residuals[name] <= halfwidth[i]).mean()) for i, name in enumerate(INTERVAL_ORDER)}


# Pretraining on ideal-perception clips (training.data.ideal_clips): stage 2 and six epochs of stage 3 (40,000 clips:
# 135-190 s an epoch on the shared 2 cores), keeping the epoch whose weights read the served validation clips best;
# the served recipe then continues from it without its stage 2. Before fine-tuning the pretrained network reads served
# rows badly (validation loss 2.8-4.4, against ~1.1 for a network trained on them): the two differ in how sure the
# emotion probabilities are and in the detection score. One epoch of fine-tuning closes that. Each change was decided
# by the members' mean best validation loss after fine-tuning (the runs' summary.json), never by the test split:
# 20,000 clips × four epochs 1.162, × eight epochs 1.111 (shipped until 2026-12-07), 40,000 clips × six epochs
# 1.096, every member lower (1.097/1.130/1.107 → 1.084/1.110/1.095; a probe of member 1 had its best pretraining epoch
# at 5 of 7, hence six). The test split then moved (docs/results-engagement.md at commit 4efafa2 against now): 3-class
# accuracy 0.863 → 0.880, model / oracle Spearman 0.973 → 0.976, mean engagement half-width 0.166 → 0.165.
PRETRAIN_RECIPE = {"curve_epochs": 2, "max_epochs": 6, "patience": 6}


def fit_network(
    config,
    train: EngagementArrays,
    val: EngagementArrays,
    options: EngagementTrainingOptions,
    pretrain: EngagementArrays | None = None,
) -> tuple[EngagementNetwork, dict]:
    """A fresh network of `config` trained with the recipe (after pretraining on `pretrain` when given)."""
    log = lambda line: print(line, flush=True)  # noqa: E731
    torch.manual_seed(options.seed)  # the initialisation too, not only the batch order (fit seeds that)
    network = build_engagement(config)
    pretrained = None
    if pretrain is not None:
        log(f"[engagement] pretraining on {len(pretrain)} ideal-perception clips")
        pretrained = fit(network, pretrain, val, replace(options, **PRETRAIN_RECIPE), log=log)
        options = replace(options, curve_epochs=0)
    summary = fit(network, train, val, options, log=log)
    if pretrained is not None:
        summary["pretrain"] = {k: pretrained[k] for k in ("best_epoch", "best_val_loss", "stop_reason", "seconds")}
        summary["seconds"] += pretrained["seconds"]
        summary["history"] = [dict(record, phase="pretrain") for record in pretrained["history"]] + summary["history"]
    return network, summary


def _fit_members(
    full_train: EngagementArrays,
    config: EngagementEnsembleConfig,
    options: EngagementTrainingOptions,
    pretrain: EngagementArrays | None = None,
) -> tuple[EngagementEnsemble, dict, EngagementArrays, EngagementArrays]:
    """Each member with the single network's recipe, seed options.seed + k: its own initialisation, batch order
    and early-stopping clips (so the members see different training clips, as in bagging). The time budget is per
    member. Returns the ensemble, a summary over the members, and the first member's train / validation split."""
    members, summaries, splits = [], [], []
    for k in range(config.members):
        member_options = replace(options, seed=options.seed + k)
        train_index, val_index = validation_split(len(full_train), options.val_fraction, member_options.seed)
        train, val = full_train.subset(train_index), full_train.subset(val_index)
        splits.append((train, val))
        print(
            f"[engagement] {options.network} member {k + 1}/{config.members} (seed {member_options.seed}): "
            f"{len(train)} training / {len(val)} validation clips",
            flush=True,
        )
        member, member_summary = fit_network(config.member, train, val, member_options, pretrain)
        summaries.append(member_summary)
        members.append(member)
    summary = {
        "best_epoch": [s["best_epoch"] for s in summaries],
        "best_val_loss": [s["best_val_loss"] for s in summaries],
        "stop_reason": "; ".join(s["stop_reason"] for s in summaries),
        "history": [dict(record, member=k) for k, s in enumerate(summaries) for record in s["history"]],
        "seconds": sum(s["seconds"] for s in summaries),
    }
    if pretrain is not None:
        summary["pretrain"] = [s["pretrain"] for s in summaries]
    return EngagementEnsemble.of(members), summary, *splits[0]


def train_and_calibrate(
    data: Path, out_dir: Path, options: EngagementTrainingOptions, pretrain: Path | None = None
) -> dict:
    """Train options.network on data/train (pretrained on the ideal clips in `pretrain` when given), calibrate its
    intervals on data/calib, and write out_dir/best.pt, metrics.jsonl and summary.json."""
    torch.set_num_threads(options.threads)
    out_dir.mkdir(parents=True, exist_ok=True)
    full_train = load_engagement_split(data / "train")
    pretrain_arrays = load_engagement_split(pretrain) if pretrain else None
    config = get_config(options.network)
    if isinstance(config, EngagementEnsembleConfig):
        model, summary, train, val = _fit_members(full_train, config, options, pretrain_arrays)
    else:
        train_index, val_index = validation_split(len(full_train), options.val_fraction, options.seed)
        train, val = full_train.subset(train_index), full_train.subset(val_index)
        print(f"[engagement] {options.network}: {len(train)} training / {len(val)} validation clips", flush=True)
        model, summary = fit_network(config, train, val, options, pretrain_arrays)
    calib = load_engagement_split(data / "calib")  # read late: it may still be building while stages 2-3 run
    halfwidth = calibrate(model, calib)
    coverage = interval_coverage(model, calib)
    summary.update(
        {
            "network": options.network,
            "options": asdict(options),
            "train_clips": len(train),
            "val_clips": len(val),
            "calib_clips": len(calib),
            "pretrain_clips": len(pretrain_arrays) if pretrain_arrays is not None else 0,
            "interval_logit_halfwidth": dict(zip(INTERVAL_ORDER, halfwidth.tolist())),
            "calib_coverage": coverage,
        }
    )
    with (out_dir / "metrics.jsonl").open("w") as handle:
        for record in summary["history"]:
            handle.write(json.dumps(record) + "\n")
    save_checkpoint(
        model,
        options.network,
        out_dir / "best.pt",
        epoch=summary["best_epoch"],
        interval_logit_halfwidth=halfwidth.tolist(),
        coverage=COVERAGE,
        pretrain_clips=summary["pretrain_clips"],
    )
    (out_dir / "summary.json").write_text(json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=2))
    print(
        f"[engagement] done in {summary['seconds']:.0f} s ({summary['stop_reason']}); best epoch "
        f"{summary['best_epoch']}; 90 % logit half-widths "
        + ", ".join(f"{n} {w:.3f}" for n, w in zip(INTERVAL_ORDER, halfwidth))
        + f" → {out_dir / 'best.pt'}",
        flush=True,
    )
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/clips"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--network", default=EngagementTrainingOptions.network)
    parser.add_argument(
        "--weights",
        type=Path,
        help="also copy the calibrated checkpoint here (the shipped default: weights/engagement-cpu.pt)",
    )
    parser.add_argument(
        "--pretrain",
        type=Path,
        help="first train on these ideal-perception clips (python -m training.data.ideal_clips), then on --data",
    )
    for field in ("batch_size", "curve_epochs", "max_epochs", "patience", "seed", "threads"):
        parser.add_argument(f"--{field.replace('_', '-')}", type=int, default=getattr(EngagementTrainingOptions, field))
    for field in ("stream_lr", "fusion_lr", "time_budget_s"):
        parser.add_argument(
            f"--{field.replace('_', '-')}", type=float, default=getattr(EngagementTrainingOptions, field)
        )
    args = parser.parse_args(argv)
    options = EngagementTrainingOptions(
        network=args.network,
        batch_size=args.batch_size,
        curve_epochs=args.curve_epochs,
        max_epochs=args.max_epochs,
        patience=args.patience,
        seed=args.seed,
        threads=args.threads,
        stream_lr=args.stream_lr,
        fusion_lr=args.fusion_lr,
        time_budget_s=args.time_budget_s,
    )
    from training.data.engagement_dataset import EngagementDataError

    try:
        train_and_calibrate(args.data, args.out, options, args.pretrain)
    except EngagementDataError as error:
        raise SystemExit(str(error)) from None
    if args.weights:
        args.weights.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.out / "best.pt", args.weights)
        print(f"[engagement] shipped → {args.weights}", flush=True)


if __name__ == "__main__":
    main()
