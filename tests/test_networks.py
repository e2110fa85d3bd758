"""One test per registered network (timm style): forward, backward, ONNX export and ONNX Runtime parity, no NaN."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from export.onnx_export import example_serving_inputs, export_onnx, onnx_matches_torch, run_serving_module
from training.networks import build_model, get_config, list_networks

# The seed-sized configs are checked at a reduced batch so the suite stays fast on 2 cores.
BATCH = {"cpu": 4, "gpu": 2}


@pytest.mark.parametrize("name", list_networks())
def test_forward_backward_export(name: str, tmp_path) -> None:
    torch.manual_seed(0)
    model = build_model(name)
    signature = model.serving_signature()
    batch = BATCH[name.rsplit("-", 1)[1]]

    outputs = model.train()(*model.example_inputs(batch))
    for output_name, value in outputs.items():
        assert torch.isfinite(value).all(), f"{output_name} has NaN/inf"
    loss = sum(value.float().pow(2).mean() for value in outputs.values() if value.is_floating_point())
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads), "missing or non-finite gradients"
    assert any(g.abs().sum() > 0 for g in grads)

    model.eval()
    onnx_path = export_onnx(model, tmp_path / "model.onnx")
    # another batch size than the export example's (2): the batch axis must really be dynamic
    inputs = example_serving_inputs(signature, batch + 1, seed=1)
    served = run_serving_module(model, inputs)
    for output_name, _dtype, dims in signature["outputs"]:
        assert served[output_name].shape == (batch + 1, *dims), output_name
        assert np.isfinite(served[output_name]).all(), f"served {output_name} has NaN/inf"
    differences = onnx_matches_torch(model, onnx_path, inputs, atol=1e-3)
    assert set(differences) == {n for n, _, _ in signature["outputs"]}


def test_action_params_and_attention_are_bounded() -> None:
    model = build_model("expression_encoder-cpu").eval()
    with torch.no_grad():
        outputs = model(torch.rand(3, 3, 64, 64))
    assert ((outputs["action_params"] >= 0) & (outputs["action_params"] <= 1)).all()
    assert torch.allclose(outputs["attention"].flatten(1).sum(1), torch.ones(3), atol=1e-5)


def test_unknown_network_names_the_registered_ones() -> None:
    with pytest.raises(KeyError, match="expression_encoder-cpu"):
        build_model("expression_encoder-tiny")


def test_gpu_variant_is_resnet50_deep() -> None:
    config = get_config("expression_encoder-gpu")
    assert config.block == "bottleneck" and config.stage_blocks == (3, 4, 6, 3)
