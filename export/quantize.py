"""Static int8 quantization of a served ONNX graph for the CPU flavour (issue 16, goal 1).

    python -m export.quantize model_repository/expression_encoder/1/model.onnx /tmp/int8.onnx \\
        --model expression_encoder

Why int8 and not bf16: ONNX Runtime's CPU provider has no bf16 convolution or GEMM kernels on x86 (its bf16 fast
math is an ARM64 option), while its int8 kernels use AVX-512 VNNI / AVX2 where the CPU has them. Measured on these
cores, the int8 expression_encoder runs ~2.2× the fp32 graph in-process at batch 16 (docs/benchmarks.md "precision").

How: ONNX Runtime's own quantizer, QDQ format (QuantizeLinear/DequantizeLinear pairs that ONNX Runtime fuses into
integer kernels), per-channel int8 weights, uint8 activations (the u8×s8 form VNNI multiplies natively), activation
ranges calibrated (per model: RECIPES) on renderings of TRAINING-split characters only, so no held-out face the
accuracy gates use (tests/test_precision.py, characters of the test split) ever sets a range. The renderer is code
(training/data), so calibration needs no data set on disk: `make repository` on a fresh clone quantizes the same
way, and the same seed gives the same calibration every time.

Only the models whose accuracy gate is in the suite are served in int8 (export/triton_repository.py CPU_SERVING);
everything else stays fp32.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from export.graph_passes import FOLDED
from facecast.vocab import EMOTIONS, EXPRESSION_ENCODER, FACE_DETECTOR

CALIBRATION_ROWS = 256
CALIBRATION_BATCH = 32
CALIBRATION_SEED = 5_000_000  # a seed range no test or evaluation set draws from


def training_characters() -> list[str]:
    from training.data.build import SPLITS

    first, end, _ = SPLITS["train"]
    return [f"c{i:05d}" for i in range(first, end)]


def expression_calibration(rows: int = CALIBRATION_ROWS, seed: int = CALIBRATION_SEED) -> np.ndarray:
    """64-px stills of training characters, every emotion equally often, uint8 [rows, 64, 64, 3]."""
    from training.data.synthetic import sample_still

    characters = training_characters()
    images = []
    for i in range(rows):
        image, _ = sample_still(
            seed + i, 64, emotion=EMOTIONS[i % len(EMOTIONS)], character_id=characters[(seed + i) % len(characters)]
        )
        images.append(np.asarray(image))
    return np.stack(images)


def detector_calibration(rows: int = CALIBRATION_ROWS, seed: int = CALIBRATION_SEED) -> np.ndarray:
    """Letterboxed 192×320 scenes of training characters (0–5 faces, occlusions), uint8 [rows, 192, 320, 3]."""
    from training.data.detection import render_scene

    characters = training_characters()
    return np.stack([np.asarray(render_scene(seed + i, "synthetic", characters, []).image) for i in range(rows)])


@dataclass(frozen=True)
class Recipe:
    """How one model is quantized; each non-default choice was measured by training/evaluate_precision.py."""

    calibration: Callable[[], np.ndarray]
    op_types: tuple[str, ...] = ()  # empty: every type ONNX Runtime can quantize
    keep_float: tuple[str, ...] = ()  # node names left in fp32
    method: str = "MinMax"  # onnxruntime.quantization.CalibrationMethod


RECIPES = {
    EXPRESSION_ENCODER: Recipe(expression_calibration),
    # The detector's scores pass head → sigmoid → 3×3 peak max-pool → top-k, where a small change of a score moves
    # or doubles a peak. Quantized whole, it lost 5.1 AP50 points on held-out scenes and agreed with fp32 on 87 % of
    # its detections; with only the convolutions in int8, the 1×1 head in fp32 and ranges from the 99.999th
    # percentile instead of the extremes, it lost 0.06 points and decided 99.4 % of held-out faces as fp32 did.
    FACE_DETECTOR: Recipe(
        detector_calibration, op_types=("Conv",), keep_float=("/network/head/Conv",), method="Percentile"
    ),
}


def quantize_int8(fp32_path: Path, out_path: Path, recipe: Recipe, input_name: str = "image") -> Path:
    """Write the QDQ int8 version of `fp32_path` to `out_path` following `recipe`."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    calibration = recipe.calibration()
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(
                {input_name: calibration[start : start + CALIBRATION_BATCH]}
                for start in range(0, len(calibration), CALIBRATION_BATCH)
            )

        def get_next(self):
            return next(self.batches, None)

    # The quantizer warns for every 1-D norm constant that per-channel axis 1 does not apply to it (they stay
    # per-tensor, which is what is wanted): noise in every `make repository`.
    logging.getLogger().setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as folder:
        prepared = Path(folder) / "prepared.onnx"
        # Shape inference and constant folding first, as ONNX Runtime's quantization guide asks: it lets the
        # quantizer see every tensor's shape and fold the norm layers' arithmetic before ranges are taken.
        quant_pre_process(str(fp32_path), str(prepared))
        # The folded pixel normalisation (export/graph_passes.py) stays in float: its input is 8-bit already, and
        # quantizing it would add a rounding step in front of the first convolution for no speed.
        nodes = onnx.load(str(prepared)).graph.node
        missing = set(recipe.keep_float) - {node.name for node in nodes}
        if missing:
            raise ValueError(f"{fp32_path}: the recipe keeps nodes in float that the graph does not have: {missing}")
        folded = [node.name for node in nodes if FOLDED in node.name]
        quantize_static(
            str(prepared),
            str(out_path),
            Batches(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=folded + list(recipe.keep_float),
            op_types_to_quantize=list(recipe.op_types) or None,
            calibrate_method=CalibrationMethod[recipe.method],
        )
    return out_path


def quantize_served_model(triton_name: str, fp32_path: Path, out_path: Path) -> Path:
    """Quantize one served model with its own calibration renderings."""
    if triton_name not in RECIPES:
        raise ValueError(f"no int8 recipe for {triton_name}; known: {sorted(RECIPES)}")
    return quantize_int8(fp32_path, out_path, RECIPES[triton_name])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("fp32", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", required=True, choices=sorted(RECIPES))
    args = parser.parse_args(argv)
    quantize_served_model(args.model, args.fp32, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
