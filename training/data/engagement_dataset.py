"""Engagement training rows from synthetic clip scripts: real expression-encoder outputs per character per step.

    python -m training.data.engagement_dataset --data data/clips [--splits train calib test] [--workers 2]

For every clip script of a split (data/clips/<split>/scripts.jsonl, from `python -m training.data.build_clips`):
  1. `training.data.clips.character_crops` renders each character's 64-px face crop at every model step (the crop the
     analysis pipeline would cut: square, 15 % margin), with its box and visibility;
  2. the shipped expression encoder (weights/expression_encoder-cpu.pt, exported to ONNX and run in-process with ONNX
     Runtime: the same graph Triton serves) turns each visible crop into emotion and style probabilities and action
     parameters;
  3. `facecast.engagement_features.frame_features` builds the 20-value row. The box is the crop's box with detector
     jitter: each edge moves by N(0, 3 % of the box size), as a face detector's boxes wander from frame to frame.
     Whether the detector finds the face, and with what score, is drawn from the served detector's measured response
     to faces of that visible fraction and height (training/data/detector_response.py, measured by
     `python -m benchmarks.detector_response`); a missed face takes a neighbouring step's row as the pipeline's
     resampling does, or stays masked. (Until 2026-12 the score was a guess, Beta(12, 1.5) with mean 0.89, against
     the served detector's ~0.55: a train/serve skew.) Steps where the character is off screen get mask 0 and a zero
     row, exactly as the pipeline leaves them.
The result, data/clips/<split>/features.npz, holds features float16 [N, 4, 128, 20], mask bool [N, 4, 128], steps
int [N] (model steps the clip lasts), the observed targets (labels) and the noise-free oracle targets
(`oracle_` prefix: engagement, resonance, shareability [N], appeal [N, 4], engagement_class [N], curve [N, 128]),
and per clip: clip_id, seed, n_characters, style (the single style, or "mixed").
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facecast.engagement_features import FRAME_FEATURE_DIM, MAX_CHARACTERS, MAX_STEPS, frame_features, step_count
from training.data.detector_response import load_response

TARGET_NAMES = ("engagement", "resonance", "shareability", "appeal", "engagement_class", "curve")
DEFAULT_ENCODER = Path("weights/expression_encoder-cpu.pt")
BOX_JITTER = 0.03  # sd of each box edge as a fraction of the box size


class EngagementDataError(RuntimeError):
    """A clip split or features file is missing or malformed (the message says which and how to build it)."""


@dataclass
class EngagementArrays:
    """One split's model inputs and targets (all arrays share the first axis: one row per clip)."""

    features: np.ndarray  # float16 [N, C, T, F]
    mask: np.ndarray  # bool [N, C, T]
    steps: np.ndarray  # int [N]
    targets: dict[str, np.ndarray]  # observed labels, TARGET_NAMES
    oracle: dict[str, np.ndarray]  # noise-free truth, TARGET_NAMES
    clip_id: np.ndarray
    seed: np.ndarray
    n_characters: np.ndarray
    style: np.ndarray  # the clip's single style, or "mixed"

    def __len__(self) -> int:
        return len(self.steps)

    def subset(self, index: np.ndarray) -> "EngagementArrays":
        return EngagementArrays(
            self.features[index], self.mask[index], self.steps[index],
            {k: v[index] for k, v in self.targets.items()}, {k: v[index] for k, v in self.oracle.items()},
            self.clip_id[index], self.seed[index], self.n_characters[index], self.style[index])


def load_engagement_split(path: str | Path) -> EngagementArrays:
    """Read data/clips/<split>/features.npz (or the file itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / "features.npz"
    if not path.exists():
        raise EngagementDataError(
            f"{path} does not exist: build it with `python -m training.data.engagement_dataset --data "
            f"{path.parent.parent}` (after `python -m training.data.build_clips --out {path.parent.parent}`)")
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    try:
        return EngagementArrays(
            features=arrays["features"], mask=arrays["mask"].astype(bool), steps=arrays["steps"],
            targets={name: arrays[name] for name in TARGET_NAMES},
            oracle={name: arrays[f"oracle_{name}"] for name in TARGET_NAMES},
            clip_id=arrays["clip_id"], seed=arrays["seed"], n_characters=arrays["n_characters"],
            style=arrays["style"])
    except KeyError as missing:
        raise EngagementDataError(f"{path} lacks {missing}; rebuild it with training.data.engagement_dataset") from None


# -- building --------------------------------------------------------------------------------------------------
_SESSION = None


def _encoder_session(onnx_path: str):
    global _SESSION
    if _SESSION is None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # one process per core
        options.inter_op_num_threads = 1
        _SESSION = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    return _SESSION


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def _targets_of(truth) -> dict[str, np.ndarray]:
    curve = np.zeros(MAX_STEPS, np.float32)
    values = np.asarray(truth.curve, np.float32)[:MAX_STEPS]
    curve[:len(values)] = values
    return {"engagement": np.float32(truth.engagement), "resonance": np.float32(truth.resonance),
            "shareability": np.float32(truth.shareability), "appeal": np.asarray(truth.appeal, np.float32),
            "engagement_class": np.int64(truth.engagement_class), "curve": curve}


def clip_rows(script, onnx_path: str) -> dict:
    """Features, mask and targets of one clip script (runs in a worker process)."""
    from training.data import clips

    session = _encoder_session(onnx_path)
    crops, boxes, visible = clips.character_crops(script)
    characters, steps = visible.shape
    characters, steps = min(characters, MAX_CHARACTERS), min(steps, MAX_STEPS)
    rng = np.random.default_rng([int(script.seed), 7])
    features = np.zeros((MAX_CHARACTERS, MAX_STEPS, FRAME_FEATURE_DIM), np.float32)
    mask = np.zeros((MAX_CHARACTERS, MAX_STEPS), bool)
    cells = np.argwhere(visible[:characters, :steps])
    if len(cells):
        images = crops[cells[:, 0], cells[:, 1]]
        emotion_logits, style_logits, action_params = session.run(
            ["emotion_logits", "style_logits", "action_params"], {"image": images})
        emotion, style = _softmax(emotion_logits), _softmax(style_logits)
        fraction = _visible_fractions(script, cells)
        response = load_response()
        missed = np.zeros_like(mask)
        for row, (c, s) in enumerate(cells):
            x0, y0, x1, y1 = (float(v) for v in boxes[c, s])
            size = np.array([x1 - x0, y1 - y0, x1 - x0, y1 - y0])
            box = np.clip(np.array([x0, y0, x1, y1]) + rng.normal(0, BOX_JITTER, 4) * size, 0, 1)
            score = response.draw(rng, float(fraction[row]), y1 - y0)
            if score is None:
                missed[c, s] = True
                continue
            features[c, s] = frame_features(emotion[row], style[row], action_params[row], box, score)
            mask[c, s] = True
        _fill_missed(features, mask, missed)
    return {"features": features.astype(np.float16), "mask": mask, **clip_labels(script)}


def clip_labels(script) -> dict:
    """Everything of a clip's row but its features and mask: steps, observed and oracle targets, seed, character
    count and style (shared with training.data.ideal_clips)."""
    from training.data import clips

    return {"steps": min(step_count(script.duration_s), MAX_STEPS),
            "targets": _targets_of(clips.observed_targets(script)),
            "oracle": _targets_of(clips.engagement_truth(script)),
            "seed": int(script.seed), "n_characters": len(script.characters),
            "style": "mixed" if script.mixed_style else script.styles[0]}


def _fill_missed(features: np.ndarray, mask: np.ndarray, missed: np.ndarray) -> None:
    """A face the detector missed at one step takes a neighbouring step's row, as the pipeline's resampling does
    (facecast.engagement_features.resample_track: the nearest observation at most one step away)."""
    for c, s in np.argwhere(missed):
        for neighbour in (s - 1, s + 1):
            if 0 <= neighbour < mask.shape[1] and mask[c, neighbour] and not missed[c, neighbour]:
                features[c, s], mask[c, s] = features[c, neighbour], True
                break


def _visible_fractions(script, cells: np.ndarray) -> np.ndarray:
    """Visible fraction of each (character, step) cell at the step centre (occlusion lowers detector confidence)."""
    from facecast.engagement_features import step_times
    from training.data import clips

    times = step_times(int(cells[:, 1].max()) + 1)
    states = {}
    fractions = np.ones(len(cells), np.float32)
    for row, (c, s) in enumerate(cells):
        if s not in states:
            states[s] = {state.character_index: state for state in clips.character_states(script, float(times[s]))}
        state = states[s].get(int(c))
        if state is not None:
            fractions[row] = float(np.clip(state.visible_fraction, 0.0, 1.0))
    return fractions


def _worker(payload: tuple[list[dict], str]) -> list[dict]:
    from training.data import clips

    scripts, onnx_path = payload
    return [clip_rows(clips.ClipScript.from_dict({k: v for k, v in item.items() if k != "clip_id"}), onnx_path)
            for item in scripts]


def export_encoder(weights: Path, directory: Path) -> Path:
    from export.onnx_export import export_onnx
    from training.checkpoints import load_checkpoint

    return export_onnx(load_checkpoint(weights), directory / "expression_encoder.onnx")


def build_split(split_dir: Path, onnx_path: Path, workers: int = 2, chunk: int = 16) -> Path:
    """Write split_dir/features.npz from split_dir/scripts.jsonl; returns the path."""
    scripts_path = split_dir / "scripts.jsonl"
    if not scripts_path.exists():
        raise EngagementDataError(f"{scripts_path} does not exist: run `python -m training.data.build_clips "
                                  f"--out {split_dir.parent}` first")
    items = [json.loads(line) for line in scripts_path.read_text().splitlines() if line.strip()]
    clip_ids = [str(item.get("clip_id", index)) for index, item in enumerate(items)]
    chunks = [(items[i:i + chunk], str(onnx_path)) for i in range(0, len(items), chunk)]
    rows: list[dict] = []
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            for part in pool.map(_worker, chunks):
                rows.extend(part)
    else:
        for payload in chunks:
            rows.extend(_worker(payload))
    return write_rows(split_dir, rows, clip_ids)


def write_rows(split_dir: Path, rows: list[dict], clip_ids: list[str]) -> Path:
    """split_dir/features.npz from per-clip rows (clip_rows' layout), written atomically."""
    split_dir.mkdir(parents=True, exist_ok=True)
    arrays = {
        "features": np.stack([r["features"] for r in rows]), "mask": np.stack([r["mask"] for r in rows]),
        "steps": np.array([r["steps"] for r in rows], np.int64),
        "clip_id": np.array(clip_ids), "seed": np.array([r["seed"] for r in rows], np.int64),
        "n_characters": np.array([r["n_characters"] for r in rows], np.int64),
        "style": np.array([r["style"] for r in rows]),
    }
    for name in TARGET_NAMES:
        arrays[name] = np.stack([r["targets"][name] for r in rows])
        arrays[f"oracle_{name}"] = np.stack([r["oracle"][name] for r in rows])
    path = split_dir / "features.npz"
    tmp = split_dir / "features.tmp.npz"
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/clips"))
    parser.add_argument("--splits", nargs="+", default=["train", "calib", "test"])
    parser.add_argument("--encoder", type=Path, default=DEFAULT_ENCODER, help="expression encoder checkpoint")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args(argv)
    if not args.encoder.exists():
        raise SystemExit(f"expression encoder weights {args.encoder} not found (train it or restore weights/)")
    with tempfile.TemporaryDirectory() as directory:
        onnx_path = export_encoder(args.encoder, Path(directory))
        for split in args.splits:
            started = time.monotonic()
            try:
                path = build_split(args.data / split, onnx_path, workers=args.workers)
            except EngagementDataError as error:
                raise SystemExit(str(error)) from None
            arrays = load_engagement_split(path)
            print(f"[engagement data] {split}: {len(arrays)} clips, {int(arrays.mask.sum())} face steps "
                  f"in {time.monotonic() - started:.0f} s → {path}", flush=True)


if __name__ == "__main__":
    main()
