"""Evaluate face_detector on held-out scenes and write docs/results-detection.md.

    python -m training.evaluate_detector [--weights weights/face_detector-cpu.pt] [--data data/detection]

Predictions come from the exported ONNX model run by ONNX Runtime (what Triton serves), on scenes the detector
never saw: synthetic scenes of held-out characters (test range of training/data/build.py) and emoji composites of
held-out emoji identities (training/data/detection.py). A face counts as found when a detection with score ≥ the
client's operating threshold (facecast.clients.face_detector.DEFAULT_SCORE_THRESHOLD) overlaps it with IoU ≥ 0.5,
matching greedily by score, each detection at most one face. The detections scored are the ones the product uses:
the model's outputs after the client's non-maximum suppression (facecast.clients.face_detector.suppress_overlapping;
until 2026-12 this page scored the raw outputs, where a face's second, weaker peak counted as a false positive).
AP50 is the area under the precision-recall curve over all thresholds (all-point interpolation). The threshold
sweep on the validation split is what the operating threshold was chosen from. Also measured: ONNX Runtime time per
frame at batch 8.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from facecast.clients.face_detector import DEFAULT_SCORE_THRESHOLD, suppress_overlapping
from facecast.clips.tracking import box_iou
from training.data.detection import INPUT_HEIGHT, INPUT_WIDTH, SIZE_BUCKETS, read_split, size_bucket
from training.evaluation import markdown_table

IOU_THRESHOLD = 0.5
SPLITS = ("val", "val_cluttered", "test", "test_cluttered", "test_emoji")
# The sets the targets are judged on: held-out synthetic = plain and cluttered backgrounds together; validation
# (where the threshold is chosen) likewise.
POOLED = {"validation": ("val", "val_cluttered"), "held-out synthetic": ("test", "test_cluttered")}
SWEEP = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6)
TARGET_RECALL = 0.93  # issue 14: precision ≥ 0.90 at recall ≥ 0.93 (IoU 0.5) on held-out synthetic scenes
TARGET_PRECISION = 0.90


def match_scene(
    boxes: np.ndarray, scores: np.ndarray, truth: np.ndarray, iou: float = IOU_THRESHOLD
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching by descending score. Returns (is_true_positive per prediction, score of the detection that
    found each true face, or -1 when none did)."""
    order = np.argsort(-scores, kind="stable")
    overlaps = box_iou(boxes[order], truth) if len(truth) else np.zeros((len(order), 0))
    taken = np.zeros(len(truth), bool)
    found_score = np.full(len(truth), -1.0)
    is_tp = np.zeros(len(scores), bool)
    for rank, prediction in enumerate(order):
        if not len(truth):
            break
        candidates = np.where(taken, -1.0, overlaps[rank])
        best = int(np.argmax(candidates))
        if candidates[best] >= iou:
            taken[best] = True
            found_score[best] = scores[prediction]
            is_tp[prediction] = True
    return is_tp, found_score


def average_precision(tp_flags: np.ndarray, scores: np.ndarray, total_truth: int) -> float:
    if total_truth == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(tp_flags[order])
    fp = np.cumsum(~tp_flags[order])
    recall = tp / total_truth
    precision = tp / np.maximum(tp + fp, 1)
    recall = np.concatenate([[0.0], recall, [recall[-1] if len(recall) else 0.0]])
    precision = np.concatenate([[1.0], precision, [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum((recall[1:] - recall[:-1]) * precision[1:]))


def _match_all(
    boxes: np.ndarray, scores: np.ndarray, truth: list[np.ndarray], min_score: float
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Every detection ≥ min_score matched to the faces once (greedy by score, so the same at any threshold):
    (is_true_positive, score) per detection, flat, and per scene the score that found each face (-1: none)."""
    all_tp, all_scores, found = [], [], []
    for scene_boxes, scene_scores, scene_truth in zip(boxes, scores, truth):
        keep = scene_scores >= min_score
        is_tp, found_score = match_scene(scene_boxes[keep], scene_scores[keep], scene_truth)
        all_tp.append(is_tp)
        all_scores.append(scene_scores[keep])
        found.append(found_score)
    return np.concatenate(all_tp), np.concatenate(all_scores), found


def _recall_precision(
    tp: np.ndarray, flat_scores: np.ndarray, found: np.ndarray, threshold: float
) -> tuple[float, float]:
    kept = flat_scores >= threshold
    recall = float((found >= threshold).mean()) if len(found) else float("nan")
    return recall, float(tp[kept].mean()) if kept.any() else float("nan")


def detection_scores(
    boxes: np.ndarray,
    scores: np.ndarray,
    truth: list[np.ndarray],
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    min_score: float = 0.01,
) -> dict:
    """Recall and precision at `score_threshold`, AP50 over all thresholds ≥ min_score; plus per-face found scores."""
    tp, flat_scores, found = _match_all(boxes, scores, truth, min_score)
    found_flat = np.concatenate(found)
    recall, precision = _recall_precision(tp, flat_scores, found_flat, score_threshold)
    kept = flat_scores >= score_threshold
    return {
        "faces": len(found_flat),
        "recall": recall,
        "precision": precision,
        "ap50": average_precision(tp, flat_scores, len(found_flat)),
        "found_scores": found,
        "false_positives_per_scene": float((~tp[kept]).sum() / max(len(truth), 1)),
    }


def client_detections(
    boxes: np.ndarray, scores: np.ndarray, records: list[dict], min_score: float = 0.01
) -> tuple[np.ndarray, np.ndarray]:
    """The model's detections [N, K, 4] / [N, K] (input pixels) as the client keeps them: clipped to the frame inside
    the letterbox, then overlapping boxes of one face suppressed (the client thresholds first, then suppresses;
    greedy by score, the same boxes survive either way)."""
    kept_boxes, kept_scores = np.zeros_like(boxes), np.zeros_like(scores)
    height, width = INPUT_HEIGHT, INPUT_WIDTH
    for index, (frame_boxes, frame_scores, record) in enumerate(zip(boxes, scores, records)):
        pad_x, pad_y = (width - record["frame_width"]) // 2, (height - record["frame_height"]) // 2
        frame = [pad_x, pad_y, pad_x + record["frame_width"], pad_y + record["frame_height"]]
        frame_boxes = np.clip(frame_boxes, frame[:2] * 2, frame[2:] * 2)
        live = np.flatnonzero(frame_scores >= min_score)
        keep = live[suppress_overlapping(frame_boxes[live], frame_scores[live])]
        kept_boxes[index, : len(keep)], kept_scores[index, : len(keep)] = frame_boxes[keep], frame_scores[keep]
    return kept_boxes, kept_scores


def best_precision_at_recall(
    boxes: np.ndarray, scores: np.ndarray, truth: list[np.ndarray], recall: float
) -> tuple[float, float]:
    """(highest precision over thresholds whose recall is ≥ `recall`, that threshold); (nan, nan) when no threshold
    reaches it. Read off the test scenes: a ceiling for the chosen operating point, not a choice of it."""
    tp, flat_scores, found = _match_all(boxes, scores, truth, min_score=0.01)
    found_flat = np.concatenate(found)
    best = (float("nan"), float("nan"))
    for threshold in np.round(np.arange(0.02, 0.9, 0.01), 2):
        reached, precision = _recall_precision(tp, flat_scores, found_flat, float(threshold))
        if reached >= recall and not precision <= best[0]:
            best = (precision, float(threshold))
    return best


def run_onnx(
    onnx_path: Path, images: np.ndarray, batch_size: int = 32, threads: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes [N, K, 4] in input pixels and scores [N, K] from ONNX Runtime."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    height, width = images.shape[1:3]
    boxes, scores = [], []
    for start in range(0, len(images), batch_size):
        b, s = session.run(["boxes", "scores"], {"image": np.ascontiguousarray(images[start : start + batch_size])})
        boxes.append(b * np.array([width, height, width, height], np.float32))
        scores.append(s)
    return np.concatenate(boxes), np.concatenate(scores)


def onnx_speed(onnx_path: Path, images: np.ndarray, threads: int, batch: int = 8, repeats: int = 20) -> float:
    """Median milliseconds per frame at `batch` frames per call."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    feed = {"image": np.ascontiguousarray(images[:batch])}
    session.run(None, feed)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        session.run(None, feed)
        timings.append((time.perf_counter() - started) / batch * 1000)
    return float(np.median(timings))


def _breakdown(records: list[dict], found: list[np.ndarray], key, threshold: float) -> pd.DataFrame:
    """Recall at `threshold` of the true faces grouped by key(record, face)."""
    rows: dict[str, list[bool]] = {}
    for record, scene_found in zip(records, found):
        for face, score in zip(record["faces"], scene_found):
            rows.setdefault(key(record, face), []).append(score >= threshold)
    return pd.DataFrame([{"group": group, "faces": len(v), "recall": float(np.mean(v))} for group, v in rows.items()])


def _summary_row(name: str, result: dict, scenes: int) -> dict:
    return {
        "set": name,
        "scenes": scenes,
        "faces": result["faces"],
        "recall": result["recall"],
        "precision": result["precision"],
        "AP50": result["ap50"],
        "false positives / scene": result["false_positives_per_scene"],
    }


def _training_history(summary_path: Path) -> tuple[list[dict], str | None]:
    """The run summaries behind a checkpoint, oldest first, following each run's `--init` back; and the checkpoint
    the oldest one continued from when that run's own summary is not on this machine."""
    chain = []
    while summary_path.is_file() and len(chain) < 20:
        run = json.loads(summary_path.read_text())
        chain.append(run)
        init = run["options"].get("init")
        if not init:
            return chain[::-1], None
        summary_path = Path(init).parent / "summary.json"
    return chain[::-1], (chain[-1]["options"]["init"] if chain else None)


def evaluate(
    weights: Path, data_dir: Path, out: Path, run_dir: Path | None = None, threshold: float = DEFAULT_SCORE_THRESHOLD
) -> dict:
    from export.onnx_export import export_onnx
    from training.checkpoints import load_checkpoint

    model = load_checkpoint(weights)
    with tempfile.TemporaryDirectory() as scratch:
        onnx_path = export_onnx(model, Path(scratch) / "face_detector.onnx")
        results, split_data = {}, {}
        for split in SPLITS:
            images, records = read_split(data_dir / split)
            truth = [np.asarray(r["boxes"], np.float32).reshape(-1, 4) for r in records]
            boxes, scores = client_detections(*run_onnx(onnx_path, images), records)
            split_data[split] = (records, boxes, scores, truth)
        for name, parts in POOLED.items():
            records, boxes, scores, truth = zip(*(split_data[part] for part in parts))
            split_data[name] = (sum(records, []), np.concatenate(boxes), np.concatenate(scores), sum(truth, []))
        for name, (_records, boxes, scores, truth) in split_data.items():
            results[name] = detection_scores(boxes, scores, truth, threshold)
        speed_images = read_split(data_dir / "test", mmap=True)[0]
        speed = {threads: onnx_speed(onnx_path, speed_images, threads) for threads in (1, 2)}
        load = os.getloadavg()[0]  # other jobs on the machine slow the timing down; the doc says how busy it was

    sweep_rows = []
    records, boxes, scores, truth = split_data["validation"]
    for t in SWEEP:
        r = detection_scores(boxes, scores, truth, t)
        f1 = 2 * r["recall"] * r["precision"] / max(r["recall"] + r["precision"], 1e-9)
        sweep_rows.append(
            {
                "threshold": t,
                "recall": r["recall"],
                "precision": r["precision"],
                "F1": f1,
                "false positives / scene": r["false_positives_per_scene"],
            }
        )
    chosen = max(sweep_rows, key=lambda row: row["F1"])["threshold"]
    old_rule = max([row["threshold"] for row in sweep_rows if row["recall"] >= 0.90], default=None)
    agreement = (
        "which is the client's threshold"
        if chosen == DEFAULT_SCORE_THRESHOLD
        else f"**the client's threshold ({DEFAULT_SCORE_THRESHOLD}) differs: "
        "update facecast.clients.face_detector.DEFAULT_SCORE_THRESHOLD**"
    )

    summary = pd.DataFrame(
        [
            _summary_row(label, results[name], len(split_data[name][0]))
            for name, label in (
                ("held-out synthetic", "held-out synthetic scenes, all (the target's set)"),
                ("test", "… plain backgrounds"),
                ("test_cluttered", "… photographs, textures, text (held-out photographs)"),
                ("test_emoji", "held-out emoji composites"),
                ("validation", "validation, all"),
                ("val", "… mixed kinds"),
                ("val_cluttered", "… cluttered (training photographs)"),
            )
        ]
    )
    target_set = split_data["held-out synthetic"]
    ceiling, ceiling_at = best_precision_at_recall(target_set[1], target_set[2], target_set[3], TARGET_RECALL)
    held = results["held-out synthetic"]
    met = held["recall"] >= TARGET_RECALL and held["precision"] >= TARGET_PRECISION
    target_lines = [
        f"Target (issue 14): precision ≥ {TARGET_PRECISION} at recall ≥ {TARGET_RECALL} on held-out synthetic scenes "
        f"with plain, textured and photographic backgrounds. At the operating threshold {threshold}: recall "
        f"{held['recall']:.3f}, precision {held['precision']:.3f} — **{'met' if met else 'missed'}**. "
        + (
            f"The best precision any threshold reaches on these scenes with recall ≥ {TARGET_RECALL} is "
            f"{ceiling:.3f} (at {ceiling_at}; read off the test scenes, so a ceiling, not a choice)."
            if ceiling == ceiling
            else f"No threshold reaches recall {TARGET_RECALL} on these scenes."
        ),
    ]
    test_records, found = split_data["test"][0], results["test"]["found_scores"]
    by_style = _breakdown(test_records, found, lambda r, f: f["style"], threshold)
    mixed = _breakdown(
        test_records,
        found,
        lambda r, f: "mixed-style scenes" if len({x["style"] for x in r["faces"]}) > 1 else "single-style scenes",
        threshold,
    )
    by_style = pd.concat([by_style.sort_values("group"), mixed.sort_values("group")], ignore_index=True)
    bucket_order = [name for _, _, name in SIZE_BUCKETS]

    def by_size(records, found):
        frame = _breakdown(records, found, lambda r, f: size_bucket(f["relative_height"]), threshold)
        return frame.set_index("group").reindex(bucket_order).dropna().reset_index()

    emoji_records, emoji_found = split_data["test_emoji"][0], results["test_emoji"]["found_scores"]
    by_set = _breakdown(emoji_records, emoji_found, lambda r, f: f["style"].removeprefix("emoji:"), threshold)
    summary_path = (run_dir or weights.parent) / "summary.json"
    size_kb = weights.stat().st_size / 1024

    lines = [
        "# face_detector: results",
        "",
        f"Written by `python -m training.evaluate_detector --weights {weights}"
        + ("" if threshold == DEFAULT_SCORE_THRESHOLD else f" --threshold {threshold}")
        + "` from the exported ONNX model run by "
        "ONNX Runtime (what Triton serves). Scenes are built by `python -m training.data.detection` (192×320 "
        "letterboxed inputs); nothing here was seen in training: the synthetic test scenes hold characters "
        "c01300–c01499 only, the emoji test scenes only emoji identities held out of training in all three sets, "
        "and the cluttered test scenes stand in front of photographs no training scene uses "
        "(training/data/hard_negatives.py).",
        "",
        f"A face is found when a detection with score ≥ **{threshold}** ("
        + (
            "the client's operating threshold, `facecast.clients.face_detector.DEFAULT_SCORE_THRESHOLD`"
            if threshold == DEFAULT_SCORE_THRESHOLD
            else f"given by --threshold; the client's is {DEFAULT_SCORE_THRESHOLD}"
        )
        + ") overlaps it with IoU ≥ 0.5; AP50 integrates "
        "precision over all thresholds. Detections are scored as the client keeps them: clipped to the frame, "
        "overlapping boxes of one face suppressed (`suppress_overlapping`). Face size = face height / the frame's "
        "short side.",
        "",
        "## Summary",
        "",
        markdown_table(summary, index=False),
        "",
        *target_lines,
        "",
        "## Held-out synthetic scenes, plain backgrounds, by style",
        "",
        markdown_table(by_style, index=False),
        "",
        "## Held-out synthetic scenes, plain backgrounds, by face size",
        "",
        markdown_table(by_size(test_records, found), index=False),
        "",
        "## Held-out emoji composites by set",
        "",
        markdown_table(by_set.sort_values("group"), index=False),
        "",
        "## Held-out emoji composites by face size",
        "",
        markdown_table(by_size(emoji_records, emoji_found), index=False),
        "",
        "## Operating threshold (validation split)",
        "",
        "Recall and precision on the validation scenes (validation characters, training emoji identities) at "
        "several thresholds; the operating threshold was chosen here, never on the test scenes.",
        "",
        markdown_table(pd.DataFrame(sweep_rows), index=False),
        "",
        "Rule: the threshold with the best validation F1, since issue 14 asks for recall and precision together "
        "(until 2026-12 it was the highest threshold with validation recall ≥ 0.90, chosen when the detector's "
        f"precision was far from any target; here it would pick {old_rule}): {chosen}, {agreement}.",
        "",
        "## Speed and size",
        "",
        f"ONNX Runtime, batch 8, 192×320 input, median of 20 runs on this machine: **{speed[1]:.2f} ms per frame** "
        f"with 1 thread, {speed[2]:.2f} ms with 2 threads (the machine's cores are shared, so 2 threads is not "
        f"always faster). Load average while timing: {load:.1f} on {os.cpu_count()} cores"
        + (
            " (above the core count: other jobs were competing and the times are inflated by about that ratio)"
            if load > (os.cpu_count() or 1)
            else ""
        )
        + f". Weights file: {size_kb:.0f} KB.",
        "",
    ]
    history, untraced = _training_history(summary_path)
    if history:
        total = sum(run["wall_seconds"] for run in history) / 60
        lines += [
            f"Training: {len(history)} run(s) of `python -m training.train_detector`, each continuing from the "
            f"previous run's best checkpoint (`--init`), {total:.1f} min of wall time in all on this machine "
            f"({history[-1]['train_scenes']} training scenes):",
            "",
        ]
        for run in history:
            options = run["options"]
            lines.append(
                f"- {options['time_budget_s']:.0f}-s budget, learning rate {options['learning_rate']}, "
                f"{options['threads']} threads, init {options.get('init') or 'fresh'}: {run['wall_seconds'] / 60:.1f} "
                f"min, validation AP50 {run['best']['val_ap50']:.3f} (raw outputs, as training measures it), "
                f"{run['stop_reason']}"
                + (f" (training splits {', '.join(options['splits'])})" if "splits" in options else "")
            )
        if untraced:
            lines.append(
                f"- before them: the runs behind {untraced}, whose records are not on this machine (the Makefile's "
                "`detector` target lists every run; earlier versions of this page give their times)"
            )
        lines.append("")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    return {
        "results": {k: {m: v for m, v in r.items() if m != "found_scores"} for k, r in results.items()},
        "speed_ms": speed,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=Path("weights/face_detector-cpu.pt"))
    parser.add_argument("--data", type=Path, default=Path("data/detection"))
    parser.add_argument("--out", type=Path, default=Path("docs/results-detection.md"))
    parser.add_argument(
        "--run",
        type=Path,
        default=Path("runs/face_detector-cpu"),
        help="training run folder whose summary.json is quoted (skipped when missing)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_SCORE_THRESHOLD,
        help="score at which a face counts as found (default: the client's operating threshold; another value "
        "judges earlier weights at their own, e.g. 0.15 for the detector before 2026-12)",
    )
    args = parser.parse_args(argv)
    evaluate(args.weights, args.data, args.out, args.run, args.threshold)


if __name__ == "__main__":
    main()
