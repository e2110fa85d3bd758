"""torch → ONNX with a dynamic batch axis, for any registered network.

A network says what it serves through two methods (training/networks/registry.py documents the contract):
`serving_signature()` names the Triton inputs and outputs, and `serving_module()` (for image networks:
training/networks/serving.py) is the nn.Module whose forward
takes exactly those inputs (serving dtypes: e.g. raw UINT8 NHWC pixels, which the module normalises itself, so no
client ever needs torch or model constants) and returns the outputs in signature order. That module is what is
exported, and what the parity check compares ONNX Runtime against.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from export.graph_passes import fold_affine_chains

NUMPY_DTYPES = {"UINT8": np.uint8, "FP32": np.float32, "INT64": np.int64, "INT32": np.int32}
# A -1 in a signature's dims is a dynamic axis (text_query's token axis): example inputs use this length for it,
# and the ONNX graph keeps it dynamic.
EXAMPLE_DYNAMIC_LENGTH = 8


def dynamic_axes(signature: dict) -> dict[str, dict[int, str]]:
    """ONNX dynamic axes: the batch axis of every tensor, plus each axis a signature declares as -1."""
    axes = {}
    for name, _dtype, dims in signature["inputs"] + signature["outputs"]:
        axes[name] = {0: "batch", **{i + 1: f"dynamic_{i + 1}" for i, d in enumerate(dims) if d == -1}}
    return axes


def example_serving_inputs(signature: dict, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs that satisfy a serving signature: pixels for UINT8, N(0, 1) for floats, 0/1 for a `mask`.

    A mask keeps its first cell set in every row, so no example is entirely empty (the models define that case,
    but an all-masked example would make parity checks compare nothing)."""
    rng = np.random.default_rng(seed)
    inputs = {}
    for name, dtype, dims in signature["inputs"]:
        shape = (batch, *(EXAMPLE_DYNAMIC_LENGTH if d == -1 else d for d in dims))
        if dtype == "UINT8":
            inputs[name] = rng.integers(0, 256, shape, dtype=np.uint8)
        elif name == "mask":
            mask = (rng.random(shape) < 0.7).astype(np.float32)
            mask.reshape(batch, -1)[:, 0] = 1.0
            inputs[name] = mask
        elif dtype == "FP32":
            inputs[name] = rng.random(shape, dtype=np.float32)
        else:
            inputs[name] = rng.integers(0, 100, shape).astype(NUMPY_DTYPES[dtype])
    return inputs


def export_onnx(network: nn.Module, path: str | Path, *, opset: int = 17, fuse_preprocessing: bool = True) -> Path:
    """Export a registered network's `serving_module()` to ONNX (dynamic batch axis); returns the path.

    `fuse_preprocessing` folds the pixel normalisation into one Mul and one Add (export/graph_passes.py); False
    writes the graph as traced, which benchmarks/precision.py measures as the unfused baseline."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    signature = network.serving_signature()
    input_names = [name for name, _, _ in signature["inputs"]]
    output_names = [name for name, _, _ in signature["outputs"]]
    module = network.eval().serving_module().eval()
    example = tuple(torch.from_numpy(value) for value in example_serving_inputs(signature, batch=2).values())
    tmp = path.with_suffix(".tmp.onnx")
    # dynamo=False: the TorchScript exporter needs no onnxscript and matches ONNX Runtime to ~1e-7 (docs/platform.md).
    with warnings.catch_warnings():
        # Instance norm always normalises with the input's own statistics, in eval too; the exporter warns about it.
        warnings.filterwarnings("ignore", message="ONNX export mode is set to TrainingMode.EVAL")
        # Shape checks inside norms and attention trace as constants; the parity test runs other batch sizes.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx|export")
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
        torch.onnx.export(
            module,
            example,
            str(tmp),
            dynamo=False,
            opset_version=opset,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes(signature),
        )
    try:
        if fuse_preprocessing:
            model = onnx.load(str(tmp))
            if fold_affine_chains(model):
                onnx.save(model, str(tmp))
        onnx.checker.check_model(str(tmp))
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)
    return path


def run_serving_module(network: nn.Module, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The torch reference for what Triton serves: `serving_module()` on serving inputs, outputs by name."""
    signature = network.serving_signature()
    with torch.no_grad():
        outputs = (
            network.eval()
            .serving_module()
            .eval()(*(torch.from_numpy(inputs[name]) for name, _, _ in signature["inputs"]))
        )
    return {name: value.numpy() for (name, _, _), value in zip(signature["outputs"], outputs)}


def _max_difference(onnx: np.ndarray, torch_output: np.ndarray) -> float:
    """Largest |ONNX − torch|; NaN when either side has a NaN or an infinity (never a pass)."""
    if onnx.shape != torch_output.shape:
        return float("nan")
    if not onnx.size:
        return 0.0
    a, b = onnx.astype(np.float64), torch_output.astype(np.float64)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("nan")
    return float(np.abs(a - b).max())


def onnx_matches_torch(
    network: nn.Module, onnx_path: str | Path, inputs: dict[str, np.ndarray] | np.ndarray, atol: float = 1e-4
) -> dict[str, float]:
    """Largest absolute difference per output between ONNX Runtime and torch on the same serving inputs.

    `inputs` maps input names to arrays; a bare array is taken as the network's single input (e.g. uint8 images)."""
    import onnxruntime as ort

    signature = network.serving_signature()
    if isinstance(inputs, np.ndarray):
        ((input_name, _, _),) = signature["inputs"]
        inputs = {input_name: inputs}
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    output_names = [name for name, _, _ in signature["outputs"]]
    onnx_outputs = session.run(output_names, inputs)
    torch_outputs = run_serving_module(network, inputs)
    differences = {name: _max_difference(o, torch_outputs[name]) for name, o in zip(output_names, onnx_outputs)}
    # A uint8 output (a picture) is rounded from floats, so a float difference far below atol can still flip a
    # value that sits on a rounding boundary by one level.
    tolerance = {name: max(atol, 1.0) if dtype == "UINT8" else atol for name, dtype, _ in signature["outputs"]}
    # `not d <= tol` rather than `d > tol`: a NaN difference fails (NaN compares False both ways)
    failing = {name: d for name, d in differences.items() if not d <= tolerance[name]}
    if failing:
        raise AssertionError(f"ONNX Runtime differs from torch beyond tolerance {tolerance}: {differences}")
    return differences
