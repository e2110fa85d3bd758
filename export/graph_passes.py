"""Rewrites of an exported ONNX graph that keep its answers and cut its cost (issue 16: fused preprocessing).

`fold_affine_chains`: image networks receive uint8 pixels and the graph turns them into normalised floats with a
chain like Cast → Div(255) → Sub(mean) → Div(std) (training/networks/serving.py, then each network's own pixel
statistics). ONNX Runtime's optimiser fuses none of it, so each step is a full pass over the frame: on the int8
face_detector the chain took ~40 % of the run at batch 16 (profiled with ONNX Runtime's profiler on these cores).
Any run of Mul/Div/Add/Sub with constant operands is one affine map x·a + b, so the chain becomes one Mul and one
Add, with a and b computed here in float64 and stored as float32. Answers change by float rounding only (export
checks every graph against torch, export/triton_repository.py).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

AFFINE_OPS = {"Mul", "Div", "Add", "Sub"}
FOLDED = "folded_affine_"  # in the names of the nodes a fold writes (export/quantize.py leaves them in float)


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    values = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return consumers


def _step(node: onnx.NodeProto, value: str, constants: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    """(a, b) such that node(value) = value·a + b, or None when the node is not affine in `value` alone."""
    if node.op_type not in AFFINE_OPS or len(node.input) != 2:
        return None
    first, second = node.input
    if first == value and second in constants:
        c = constants[second].astype(np.float64)
        return {
            "Mul": (c, np.zeros_like(c)),
            "Div": (1.0 / c, np.zeros_like(c)),
            "Add": (np.ones_like(c), c),
            "Sub": (np.ones_like(c), -c),
        }[node.op_type]
    if second == value and first in constants and node.op_type in ("Mul", "Add", "Sub"):
        c = constants[first].astype(np.float64)
        return {"Mul": (c, np.zeros_like(c)), "Add": (np.ones_like(c), c), "Sub": (-np.ones_like(c), c)}[node.op_type]
    return None


def fold_affine_chains(model: onnx.ModelProto, min_length: int = 2) -> int:
    """Replace every run of ≥ `min_length` affine nodes on float tensors by one Mul and one Add; returns how many
    runs were folded. A run stops where its value has more than one consumer or is a graph output (folding there
    would drop a tensor someone reads)."""
    graph = model.graph
    constants = _constants(graph)
    outputs = {output.name for output in graph.output}
    folded = 0
    changed = True
    while changed:  # one run at a time: each rewrite changes the consumer map
        changed = False
        consumers = _consumers(graph)
        for start in graph.node:
            if start.op_type != "Cast":
                continue
            value, chain = start.output[0], []
            scale, shift = np.ones(()), np.zeros(())
            while value not in outputs and len(consumers.get(value, [])) == 1:
                node = consumers[value][0]
                step = _step(node, value, constants)
                if step is None:
                    break
                a, b = step
                scale, shift = scale * a, shift * a + b
                chain.append(node)
                value = node.output[0]
            if len(chain) < min_length:
                continue
            prefix = chain[0].name or chain[0].output[0]
            # equal per-channel values (the networks use one mean and std for R, G and B) become scalars: a scalar
            # operand is ONNX Runtime's fastest broadcast
            scale, shift = (v.flat[0] if np.all(v == v.flat[0]) else v for v in np.broadcast_arrays(scale, shift))
            scale_name, shift_name, scaled = f"{prefix}/folded_scale", f"{prefix}/folded_shift", f"{prefix}/folded"
            graph.initializer.extend(
                [
                    numpy_helper.from_array(scale.astype(np.float32), scale_name),
                    numpy_helper.from_array(shift.astype(np.float32), shift_name),
                ]
            )
            position = list(graph.node).index(chain[0])
            for node in chain:
                graph.node.remove(node)
            graph.node.insert(
                position, helper.make_node("Mul", [start.output[0], scale_name], [scaled], name=f"{prefix}/{FOLDED}mul")
            )
            graph.node.insert(
                position + 1, helper.make_node("Add", [scaled, shift_name], [value], name=f"{prefix}/{FOLDED}add")
            )
            folded += 1
            changed = True
            break
    _drop_unused_constants(graph)
    return folded


def _drop_unused_constants(graph: onnx.GraphProto) -> None:
    """Constants only the folded nodes read (ONNX Runtime would warn about each one at every session start)."""
    read = {name for node in graph.node for name in node.input} | {output.name for output in graph.output}
    for node in [n for n in graph.node if n.op_type == "Constant" and n.output[0] not in read]:
        graph.node.remove(node)
    for tensor in [t for t in graph.initializer if t.name not in read]:
        graph.initializer.remove(tensor)
