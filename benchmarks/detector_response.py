"""How the served face detector responds to the faces of synthetic clips: the measured table the engagement training
data draws its detection scores and missed faces from (training/data/detector_response.json).

    python -m benchmarks.detector_response [--clips 40]        # ~4 min; starts its own Triton

The engagement model reads a per-step detection score, and in the app every score comes from `face_detector`
through Triton, while its training rows are built from rendered crops without running the detector
(training/data/engagement_dataset.py). Until this table existed the training rows drew scores from a guess
(Beta(12, 1.5), mean 0.89) while the served detector scores true faces around 0.5–0.7, and every visible face
counted as seen, while the detector misses small and covered ones: a train/serve skew.

This renders full frames of clip scripts at the model's step times (calibration-split characters: neither the
engagement model's training nor its test characters, 1–4 per clip, the generator's own mix of shots, zooms and
occluders), runs the served detector on them at its operating threshold, and matches detections one-to-one to the
drawn faces (IoU ≥ 0.3, strongest first). For each bin of (visible fraction, face height) it records the share of
faces detected and the mean and sd of the logit of the detection score of those detected.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from facecast.clips.tracking import box_iou
from facecast.config import PROJECT_ROOT
from facecast.engagement_features import step_count, step_times
from training.data.build_clips import SPLITS
from training.data.detector_response import HEIGHT_EDGES, RESPONSE_PATH, VISIBLE_EDGES, bin_of

FIRST_SEED = 770_000
IOU_MATCH = 0.3


def measure(urls: list[str], clips: int, batch: int = 8) -> list[tuple[float, float, bool, float]]:
    """(visible fraction, face height, detected, score) for every drawn face of every rendered step."""
    from facecast.clients.face_detector import FaceDetector
    from training.data.clips import render_frames, sample_clip_script

    detector = FaceDetector.for_urls(urls)
    first, end, _ = SPLITS["calib"]
    characters = [f"c{i:05d}" for i in range(first, end)]
    rows: list[tuple[float, float, bool, float]] = []
    for index in range(clips):
        script = sample_clip_script(FIRST_SEED + index, character_ids=characters)
        frames = list(render_frames(script, times=step_times(step_count(script.duration_s))))
        for start in range(0, len(frames), batch):
            part = frames[start : start + batch]
            found = detector.detect([frame.image for frame in part])
            for frame, detections in zip(part, found):
                taken: set[int] = set()
                overlaps = box_iou(np.array([box for _, box, _ in frame.faces]), np.array([d.box for d in detections]))
                for face, (_, box, visible) in enumerate(frame.faces):
                    height = (box[3] - box[1]) / frame.image.shape[0]
                    best, best_iou = -1, IOU_MATCH
                    for k in range(len(detections)):  # strongest first
                        if k not in taken and overlaps[face, k] >= best_iou:
                            best, best_iou = k, overlaps[face, k]
                    if best >= 0:
                        taken.add(best)
                    rows.append((visible, height, best >= 0, detections[best].score if best >= 0 else float("nan")))
        print(f"[detector response] clip {index + 1}/{clips}: {len(rows)} faces so far", flush=True)
    return rows


def response_table(rows: list[tuple[float, float, bool, float]]) -> dict:
    """Per (visible, height) bin: faces, share detected, mean and sd of the detected scores' logits; bins with too
    few faces take the pooled values of their visible-fraction row (then of everything)."""
    visible, height, detected, score = (np.array(column) for column in zip(*rows))
    detected = detected.astype(bool)
    logits = np.log(np.clip(score, 1e-4, 1 - 1e-4) / (1 - np.clip(score, 1e-4, 1 - 1e-4)))

    def stats(where: np.ndarray) -> dict:
        hits = where & detected
        return {
            "faces": int(where.sum()),
            "detected": round(float(hits.sum() / max(1, where.sum())), 4),
            "logit_mean": round(float(logits[hits].mean()), 4) if hits.sum() >= 5 else None,
            "logit_sd": round(float(logits[hits].std()), 4) if hits.sum() >= 5 else None,
        }

    bins = np.array([bin_of(v, h) for v, h in zip(visible, height)])
    overall = stats(np.ones(len(rows), bool))
    table = []
    for i in range(len(VISIBLE_EDGES) - 1):
        row_stats = stats(bins[:, 0] == i)
        cells = []
        for j in range(len(HEIGHT_EDGES) - 1):
            cell = stats((bins[:, 0] == i) & (bins[:, 1] == j))
            fallback = row_stats if row_stats["logit_mean"] is not None else overall
            if cell["faces"] < 20:
                cell = {**fallback, "faces": cell["faces"], "pooled": True}
            elif cell["logit_mean"] is None:
                cell = {**cell, "logit_mean": fallback["logit_mean"], "logit_sd": fallback["logit_sd"]}
            cells.append(cell)
        table.append(cells)
    return {"overall": overall, "table": table}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--repository", type=Path, default=PROJECT_ROOT / "model_repository")
    parser.add_argument("--out", type=Path, default=RESPONSE_PATH)
    args = parser.parse_args(argv)
    from facecast.clients.face_detector import DEFAULT_SCORE_THRESHOLD
    from facecast.serving import process

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="facecast-detector-response-") as temporary:
        with process.loopback_server(args.repository, Path(temporary) / "run", timeout=180) as (settings, _):
            rows = measure([settings.triton_url], args.clips)
    result = {
        "source": f"python -m benchmarks.detector_response --clips {args.clips}",
        "clips": args.clips,
        "first_seed": FIRST_SEED,
        "score_threshold": DEFAULT_SCORE_THRESHOLD,
        "visible_edges": list(VISIBLE_EDGES),
        "height_edges": list(HEIGHT_EDGES),
        **response_table(rows),
    }
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(args.out)
    overall = result["overall"]
    print(
        f"{overall['faces']} faces: {overall['detected']:.3f} detected, score logit "
        f"{overall['logit_mean']:+.2f} ± {overall['logit_sd']:.2f} "
        f"(score {1 / (1 + np.exp(-overall['logit_mean'])):.3f}) in {time.perf_counter() - started:.0f} s"
    )
    for i, cells in enumerate(result["table"]):
        print(
            f"visible {VISIBLE_EDGES[i]:.2f}-{VISIBLE_EDGES[i + 1]:.2f}: "
            + "  ".join(f"{c['faces']}/{c['detected']:.2f}/{c['logit_mean']:+.2f}" for c in cells)
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
