"""torch → ONNX with a dynamic batch axis and the serving contract's raw-pixel input.

The exported graph takes `image` UINT8 [B, S, S, 3] (RGB, NHWC, as a client reads it from a file) and does the
uint8 → float, NHWC → NCHW and normalisation steps itself, so no client ever needs torch or model constants.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn


class RawPixelServing(nn.Module):
    """Wraps a network whose forward takes float NCHW in [0, 1] and returns a dict; outputs in a fixed order."""

    def __init__(self, network: nn.Module, output_names: tuple[str, ...]):
        super().__init__()
        self.network = network
        self.output_names = output_names

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        floats = image.permute(0, 3, 1, 2).to(torch.float32) / 255.0
        outputs = self.network(floats)
        return tuple(outputs[name] for name in self.output_names)


def export_onnx(network: nn.Module, path: str | Path, *, opset: int = 17) -> Path:
    """Export a registered network (it must have `serving_signature()`); returns the ONNX path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    signature = network.serving_signature()
    (input_name, _, input_dims), = signature["inputs"]
    output_names = tuple(name for name, _, _ in signature["outputs"])
    wrapper = RawPixelServing(network.eval(), output_names).eval()
    example = torch.randint(0, 256, (2, *input_dims), dtype=torch.uint8)
    tmp = path.with_suffix(".tmp.onnx")
    # dynamo=False: the TorchScript exporter needs no onnxscript and matches ONNX Runtime to ~1e-7 (FACTS.md).
    # Instance norm always normalises with the image's own statistics, in eval too; the exporter warns about that.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="ONNX export mode is set to TrainingMode.EVAL")
        # Shape checks inside instance/batch norm trace as constants; the parity test runs other batch sizes.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx|export")
        _export(wrapper, example, tmp, opset, input_name, output_names)
    onnx.checker.check_model(str(tmp))
    tmp.replace(path)
    return path


def _export(wrapper, example, tmp, opset, input_name, output_names) -> None:
    torch.onnx.export(
        wrapper, (example,), str(tmp), dynamo=False, opset_version=opset,
        input_names=[input_name], output_names=list(output_names),
        dynamic_axes={input_name: {0: "batch"}, **{name: {0: "batch"} for name in output_names}},
    )


def onnx_matches_torch(network: nn.Module, onnx_path: str | Path, images_uint8: np.ndarray,
                       atol: float = 1e-4) -> dict[str, float]:
    """Largest absolute difference per output between ONNX Runtime and torch on the same uint8 images."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    signature = network.serving_signature()
    output_names = [name for name, _, _ in signature["outputs"]]
    onnx_outputs = session.run(output_names, {signature["inputs"][0][0]: images_uint8})
    with torch.no_grad():
        torch_outputs = RawPixelServing(network.eval(), tuple(output_names))(torch.from_numpy(images_uint8))
    differences = {name: float(np.abs(o - t.numpy()).max()) for name, o, t in zip(output_names, onnx_outputs, torch_outputs)}
    worst = max(differences.values())
    if worst > atol:
        raise AssertionError(f"ONNX Runtime differs from torch by {worst:.2e} (> {atol}): {differences}")
    return differences

