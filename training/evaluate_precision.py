"""Accuracy of a reduced-precision served graph against the fp32 graph it came from (issue 16's accuracy gates).

    python -m training.evaluate_precision --model face_detector \
        model_repository/face_detector/1/model.fp32.onnx model_repository/face_detector/1/model.onnx

Both graphs run in ONNX Runtime in this process, which is exactly what Triton's python backend runs
(export/python_backend/model.py), on held-out data the int8 calibration never saw (export/quantize.py calibrates on
training-split characters; these sets draw test-split characters from their own seed ranges). Two checks per model,
the issue's wording:

- its results doc's main metric may lose at most MAX_POINT_LOSS points: expression_encoder's emotion accuracy on
  held-out characters (docs/results-expression.md), face_detector's AP50 and recall at the operating threshold on
  held-out scenes (docs/results-detection.md);
- agreement with fp32 ≥ MIN_AGREEMENT: the argmax of every classification head (emotion and style) for the encoder;
  for the detector, which has no argmax, the share of detections above the operating threshold that the other
  graph also makes (one-to-one at IoU ≥ 0.5).

tests/test_precision.py holds every int8 model of export/triton_repository.py CPU_SERVING to these on sets sized
for the suite; benchmarks/precision.py reports them on larger sets beside the speed-ups.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from facecast.vocab import EMOTIONS, EXPRESSION_ENCODER, FACE_DETECTOR, STYLES

MAX_POINT_LOSS = 0.5  # percentage points of the main metric
MIN_AGREEMENT = 0.99
STILL_SEED = 79_000_000  # apart from the quality floors' 77 M and the calibration's 5 M
SCENE_SEED = 79_500_000


def session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_graph(path: Path, images: np.ndarray, batch: int = 64) -> dict[str, np.ndarray]:
    graph = session(path)
    names = [output.name for output in graph.get_outputs()]
    parts = [graph.run(names, {"image": images[start : start + batch]}) for start in range(0, len(images), batch)]
    return {name: np.concatenate([part[i] for part in parts]) for i, name in enumerate(names)}


def test_characters() -> list[str]:
    from training.data.build import SPLITS

    first, end, _ = SPLITS["test"]
    return [f"c{i:05d}" for i in range(first, end)]


def held_out_stills(per_emotion: int, seed: int = STILL_SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """64-px stills of test-split characters: images, emotion index, style index."""
    from training.data.synthetic import sample_still

    characters = test_characters()
    images, emotions, styles = [], [], []
    for k, emotion in enumerate(EMOTIONS):
        for i in range(per_emotion):
            still_seed = seed + 10_000 * k + i
            image, labels = sample_still(
                still_seed, 64, emotion=emotion, character_id=characters[still_seed % len(characters)]
            )
            images.append(np.asarray(image))
            emotions.append(EMOTIONS.index(labels["emotion"]))
            styles.append(STYLES.index(labels["style"]))
    return np.stack(images), np.array(emotions), np.array(styles)


def expression_gate(fp32: Path, reduced: Path, per_emotion: int = 100) -> dict:
    images, emotions, styles = held_out_stills(per_emotion)
    a, b = run_graph(fp32, images), run_graph(reduced, images)
    cosine = (a["expression"] * b["expression"]).sum(1) / (
        np.linalg.norm(a["expression"], axis=1) * np.linalg.norm(b["expression"], axis=1)
    )
    return {
        "model": EXPRESSION_ENCODER,
        "held_out": f"{len(images)} stills of test-split characters",
        "metric": "emotion accuracy",
        "fp32": float((a["emotion_logits"].argmax(1) == emotions).mean()),
        "reduced": float((b["emotion_logits"].argmax(1) == emotions).mean()),
        "agreement": {
            "emotion argmax": float((a["emotion_logits"].argmax(1) == b["emotion_logits"].argmax(1)).mean()),
            "style argmax": float((a["style_logits"].argmax(1) == b["style_logits"].argmax(1)).mean()),
        },
        "style accuracy": (
            float((a["style_logits"].argmax(1) == styles).mean()),
            float((b["style_logits"].argmax(1) == styles).mean()),
        ),
        "expression cosine (min, mean)": (float(cosine.min()), float(cosine.mean())),
    }


def held_out_scenes(count: int, seed: int = SCENE_SEED) -> tuple[np.ndarray, list[np.ndarray]]:
    """Letterboxed 192×320 synthetic scenes of test-split characters and their true boxes (input pixels)."""
    from training.data.detection import render_scene

    characters = test_characters()
    scenes = [render_scene(seed + i, "synthetic", characters, []) for i in range(count)]
    return (
        np.stack([np.asarray(scene.image) for scene in scenes]),
        [np.array(scene.boxes, np.float32).reshape(-1, 4) for scene in scenes],
    )


def _detections(path: Path, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    outputs = run_graph(path, images, batch=32)
    height, width = images.shape[1:3]
    return outputs["boxes"] * np.array([width, height, width, height], np.float32), outputs["scores"]


def detection_agreement(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], threshold: float) -> float:
    """Detections above `threshold` that the other graph also makes (one-to-one, IoU ≥ 0.5), over all made."""
    from training.evaluate_detector import match_scene

    shared = made = 0
    for boxes_a, scores_a, boxes_b, scores_b in zip(*a, *b):
        kept_a, kept_b = boxes_a[scores_a >= threshold], boxes_b[scores_b >= threshold]
        is_shared, _ = match_scene(kept_a, scores_a[scores_a >= threshold], kept_b)
        shared += int(is_shared.sum())
        made += max(len(kept_a), len(kept_b))
    return shared / made if made else 1.0


def face_decision_agreement(a: dict, b: dict, threshold: float) -> float:
    """Held-out faces on which both graphs decide the same: found (a detection ≥ threshold at IoU ≥ 0.5) or not."""
    found_a, found_b = (np.concatenate(scores["found_scores"]) >= threshold for scores in (a, b))
    return float((found_a == found_b).mean())


def detector_gate(fp32: Path, reduced: Path, scenes: int = 300) -> dict:
    # the client's operating threshold, as the detector's own evaluation uses it
    from training.evaluate_detector import DEFAULT_SCORE_THRESHOLD, detection_scores

    images, truth = held_out_scenes(scenes)
    a, b = _detections(fp32, images), _detections(reduced, images)
    score_a, score_b = detection_scores(*a, truth), detection_scores(*b, truth)
    return {
        "model": FACE_DETECTOR,
        "held_out": f"{scenes} scenes of test-split characters ({score_a['faces']} faces)",
        "metric": "AP50",
        "fp32": score_a["ap50"],
        "reduced": score_b["ap50"],
        "recall": (score_a["recall"], score_b["recall"]),
        "agreement": {"face found or missed": face_decision_agreement(score_a, score_b, DEFAULT_SCORE_THRESHOLD)},
        "detections ≥ threshold made by both": detection_agreement(a, b, DEFAULT_SCORE_THRESHOLD),
    }


GATES: dict[str, Callable[[Path, Path], dict]] = {EXPRESSION_ENCODER: expression_gate, FACE_DETECTOR: detector_gate}


def gate_sizes(scale: int) -> dict[str, dict[str, int]]:
    """Each gate's held-out set size, `scale` times the suite's (100 stills per emotion, 300 scenes)."""
    return {EXPRESSION_ENCODER: {"per_emotion": 100 * scale}, FACE_DETECTOR: {"scenes": 300 * scale}}


def failures(result: dict) -> list[str]:
    """What a gate result breaks, in words (empty when it passes)."""
    problems = []
    loss = 100 * (result["fp32"] - result["reduced"])
    if loss > MAX_POINT_LOSS:
        problems.append(f"{result['metric']} lost {loss:.2f} points (> {MAX_POINT_LOSS})")
    if "recall" in result and 100 * (result["recall"][0] - result["recall"][1]) > MAX_POINT_LOSS:
        problems.append(f"recall lost {100 * (result['recall'][0] - result['recall'][1]):.2f} points")
    for name, value in result["agreement"].items():
        if value < MIN_AGREEMENT:
            problems.append(f"{name} agreement {value:.4f} < {MIN_AGREEMENT}")
    return problems


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, choices=sorted(GATES))
    parser.add_argument("fp32", type=Path, help="the fp32 graph (a served repository's model.fp32.onnx)")
    parser.add_argument("reduced", type=Path, help="the reduced-precision graph (its model.onnx)")
    parser.add_argument("--scale", type=int, default=4, help="multiply the suite's set sizes by this")
    args = parser.parse_args(argv)
    result = GATES[args.model](args.fp32, args.reduced, **gate_sizes(args.scale)[args.model])
    print(json.dumps(result, indent=1, ensure_ascii=False))
    print("passes" if not failures(result) else "FAILS: " + "; ".join(failures(result)))


if __name__ == "__main__":
    main()
