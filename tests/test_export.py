"""The Triton repository writer: CPU and GPU flavours expose the same contract; a failed export leaves nothing."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from export.triton_repository import CPU_SERVING, GPU_SERVING, ServingSettings, config_pbtxt, write_model
from facecast.config import PROJECT_ROOT
from training.networks import build_model, list_networks


def io_section(config: str) -> str:
    return config[config.index("input [") : config.index("dynamic_batching")]


@pytest.mark.parametrize("name", [n for n in list_networks() if n.endswith("-cpu")])
def test_cpu_and_gpu_flavours_declare_identical_inputs_and_outputs(name: str) -> None:
    network = build_model(name)
    signature = network.serving_signature()
    triton_name = network.config.triton_name
    cpu = config_pbtxt(triton_name, signature, "cpu", CPU_SERVING.get(triton_name, ServingSettings()))
    gpu = config_pbtxt(triton_name, signature, "gpu", GPU_SERVING.get(triton_name, ServingSettings()))
    assert 'backend: "python"' in cpu and "KIND_CPU" in cpu
    assert 'platform: "tensorrt_plan"' in gpu and "KIND_GPU" in gpu
    assert io_section(cpu) == io_section(gpu)


def test_the_encoder_takes_raw_64_px_pixels() -> None:
    signature = build_model("expression_encoder-cpu").serving_signature()
    cpu = config_pbtxt("expression_encoder", signature, "cpu", ServingSettings())
    assert re.search(r"name: \"image\"\s+data_type: TYPE_UINT8\s+dims: \[ 64, 64, 3 \]", cpu)


def test_batching_off_has_no_dynamic_batching_block() -> None:
    signature = build_model("expression_encoder-cpu").serving_signature()
    config = config_pbtxt("m", signature, "cpu", ServingSettings(dynamic_batching=False))
    assert "dynamic_batching" not in config and "max_batch_size: 64" in config


def test_write_model_lays_out_a_python_backend_model(tmp_path) -> None:
    network = build_model("expression_encoder-cpu").eval()
    onnx_path = write_model(tmp_path, network, "cpu")
    model_dir = tmp_path / "expression_encoder"
    assert onnx_path == model_dir / "1" / "model.onnx"
    assert (model_dir / "1" / "model.py").is_file()
    config = (model_dir / "config.pbtxt").read_text()
    assert f"max_queue_delay_microseconds: {CPU_SERVING['expression_encoder'].max_queue_delay_us}" in config
    assert [p.name for p in tmp_path.iterdir()] == ["expression_encoder"], "no staging folder left behind"


def test_failed_export_leaves_the_previous_model_untouched(tmp_path) -> None:
    network = build_model("expression_encoder-cpu").eval()
    write_model(tmp_path, network, "cpu")
    before = (tmp_path / "expression_encoder" / "1" / "model.onnx").read_bytes()

    class Broken(type(network)):
        def forward(self, images):
            raise RuntimeError("export blew up")

    broken = Broken(network.config).eval()
    with pytest.raises(RuntimeError, match="export blew up"):
        write_model(tmp_path, broken, "cpu")
    assert (tmp_path / "expression_encoder" / "1" / "model.onnx").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["expression_encoder"]


def test_parity_check_fails_on_nan_outputs(tmp_path) -> None:
    """A checkpoint with a NaN weight makes torch and ONNX Runtime both output NaN: that is no match (NaN > atol is
    False, so a plain `difference > atol` check would pass it)."""
    import numpy as np
    import torch

    from export.onnx_export import example_serving_inputs, export_onnx, onnx_matches_torch

    network = build_model("expression_encoder-cpu").eval()
    with torch.no_grad():
        next(network.parameters()).fill_(float("nan"))
    onnx_path = export_onnx(network, tmp_path / "nan.onnx")
    inputs = example_serving_inputs(network.serving_signature(), batch=2)
    with pytest.raises(AssertionError, match="differs from torch"):
        onnx_matches_torch(network, onnx_path, inputs)
    healthy = build_model("expression_encoder-cpu").eval()
    differences = onnx_matches_torch(healthy, export_onnx(healthy, tmp_path / "ok.onnx"), inputs)
    assert all(np.isfinite(d) and d <= 1e-4 for d in differences.values()), differences


@pytest.mark.slow
def test_gpu_repository_is_written_and_the_plan_builder_covers_every_input(tmp_path) -> None:
    """The GPU flavour as `make repository-gpu` writes it (every served network, from the shipped weights), then
    export/tensorrt/build_plans.sh as a dry run (TRTEXEC=echo): one trtexec call per model, on its ONNX file, with a
    min/opt/max shape for every input that config.pbtxt declares. TensorRT itself runs only in NVIDIA's container."""
    import subprocess

    from export.embedders import MODELS as EMBEDDERS
    from export.embedders import write_embedder_models
    from export.triton_repository import write_repository
    from facecast.config import PROJECT_ROOT
    from facecast.vocab import SERVED_MODELS

    weights = PROJECT_ROOT / "weights"
    write_repository(tmp_path, [weights / f"{name}-cpu.pt" for name in SERVED_MODELS if name not in EMBEDDERS], "gpu")
    write_embedder_models(tmp_path, weights, "gpu")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(SERVED_MODELS)
    built = subprocess.run(
        ["bash", str(PROJECT_ROOT / "export" / "tensorrt" / "build_plans.sh"), str(tmp_path)],
        env={**os.environ, "TRTEXEC": "echo trtexec"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    calls = [line for line in built.stdout.splitlines() if line.startswith("trtexec ")]
    assert len(calls) == len(SERVED_MODELS), built.stdout
    for name in SERVED_MODELS:
        config = (tmp_path / name / "config.pbtxt").read_text()
        assert 'platform: "tensorrt_plan"' in config and "KIND_GPU" in config
        [call] = [c for c in calls if f"/{name}/1/model.onnx" in c]
        onnx = call.split("--onnx=")[1].split()[0]
        assert Path(onnx).is_file() and "--fp16" in call and f"--saveEngine={Path(onnx).with_suffix('.plan')}" in call
        max_batch = int(re.search(r"max_batch_size: (\d+)", config).group(1))
        declared = re.findall(
            r'name: "(\w+)"\s+data_type: \w+\s+dims: \[ ([\d, -]+) \]',
            config[config.index("input [") : config.index("output [")],
        )
        assert declared, config
        min_shapes = call.split("--minShapes=")[1].split()[0].split(",")
        max_shapes = call.split("--maxShapes=")[1].split()[0].split(",")
        assert len(min_shapes) == len(max_shapes) == len(declared), (name, call)
        for input_name, dims in declared:
            shape = "x".join(d.strip() for d in dims.split(","))
            # a dynamic axis (-1) gets the script's profile: 1 token at least, 32 (MAX_TOKENS) at most
            low, high = shape.replace("-1", "1"), shape.replace("-1", "32")
            assert f"{input_name}:1x{low}" in min_shapes and f"{input_name}:{max_batch}x{high}" in max_shapes


def _readme_contract() -> dict[str, dict[str, dict[str, tuple[str | None, list[int]]]]]:
    """README's serving table → {model: {"inputs"/"outputs": {tensor: (dtype or None, dims)}}}. A cell lists
    tensors as `name` [DTYPE] [dims]; names before one dims share them (`input_ids`, `attention_mask` INT64 [32])."""
    import re

    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme.split("## Serving contract", 1)[1].split("\n## ", 1)[0]
    token = re.compile(r"`(?P<name>\w+)`|(?P<dtype>UINT8|FP32|INT64|INT32)|\[(?P<dims>[-\d, ]+)\]|\((?P<note>[^)]*)\)")
    contract = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        model = cells[0].strip("`")
        contract[model] = {}
        for kind, cell in zip(("inputs", "outputs"), cells[1:]):
            tensors, pending, dtype = {}, [], None
            for match in token.finditer(cell):
                if match["name"]:
                    pending.append(match["name"])
                elif match["dtype"]:
                    dtype = match["dtype"]
                elif match["dims"]:
                    for name in pending:
                        tensors[name] = (dtype, [int(d) for d in match["dims"].split(",")])
                    pending, dtype = [], None
            contract[model][kind] = tensors
    return contract


def test_the_readme_serving_table_is_what_every_network_serves() -> None:
    """The README's table is the contract people read: it must name every served model's tensors with the dims
    (and, where it states one, the dtype) each network's serving_signature() declares (the CPU flavour)."""
    from facecast.vocab import SERVED_MODELS

    contract = _readme_contract()
    assert set(contract) == set(SERVED_MODELS)
    for model in SERVED_MODELS:
        signature = build_model(f"{model}-cpu").serving_signature()
        for kind in ("inputs", "outputs"):
            declared = {name: (dtype, list(dims)) for name, dtype, dims in signature[kind]}
            written = contract[model][kind]
            assert set(written) == set(declared), (model, kind, sorted(written), sorted(declared))
            for name, (dtype, dims) in written.items():
                assert dims == declared[name][1], (model, name, dims, declared[name][1])
                assert dtype in (None, declared[name][0]), (model, name, dtype, declared[name][0])


def test_calibrated_versions_are_added_beside_the_default_and_survive_a_rebuild(tmp_path) -> None:
    import torch

    from export.triton_repository import add_version

    default = build_model("engagement-cpu").eval()
    write_model(tmp_path, default)
    config = (tmp_path / "engagement" / "config.pbtxt").read_text()
    assert "version_policy: { all { } }" in config  # every version loads; requests name theirs
    calibrated = build_model("engagement-cpu").eval()
    with torch.no_grad():
        calibrated.studio.enabled.fill_(1.0)
        calibrated.studio.bias.fill_(0.5)
    assert add_version(tmp_path, calibrated) == 2
    assert add_version(tmp_path, calibrated) == 3
    assert sorted(p.name for p in (tmp_path / "engagement").iterdir() if p.is_dir()) == ["1", "2", "3"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind
    write_model(tmp_path, default)  # `make repository` again: version 1 rewritten, the studio's kept
    assert (tmp_path / "engagement" / "3" / "model.onnx").is_file()
    with pytest.raises(ValueError, match="not a versioned model"):
        add_version(tmp_path, build_model("expression_encoder-cpu"))


def test_the_config_names_the_weights_version_1_serves_and_keeps_them_through_added_versions(tmp_path) -> None:
    """Reports are fingerprinted by the served weights (facecast.clips.pipeline.ClipAnalyzer.weights): the digest in
    config.pbtxt must follow version 1's weights, and only them."""
    import torch

    from export.triton_repository import add_version, served_weights_sha256, weights_sha256

    default = build_model("engagement-cpu").eval()
    write_model(tmp_path, default)
    config_path = tmp_path / "engagement" / "config.pbtxt"
    digest = served_weights_sha256(config_path.read_text())
    assert digest == weights_sha256(default) and len(digest) == 64
    assert weights_sha256(default) == weights_sha256(default)  # the same weights: the same digest, export after export
    assert weights_sha256(default, "int8") != digest  # served in another precision, it answers differently
    retrained = build_model("engagement-cpu").eval()
    with torch.no_grad():
        retrained.studio.bias.fill_(0.5)
    assert weights_sha256(retrained) != digest
    assert add_version(tmp_path, retrained) == 2
    assert served_weights_sha256(config_path.read_text()) == digest  # version 1 did not change
    write_model(tmp_path, retrained)  # new shipped weights: `make repository`
    assert served_weights_sha256(config_path.read_text()) == weights_sha256(retrained)
    gpu = tmp_path / "gpu"
    write_model(gpu, retrained, "gpu")
    assert served_weights_sha256((gpu / "engagement" / "config.pbtxt").read_text()) == weights_sha256(retrained)


def test_a_calibrated_version_goes_into_the_gpu_repository_under_the_same_number(tmp_path) -> None:
    from export.triton_repository import main

    default = build_model("engagement-cpu").eval()
    write_model(tmp_path, default, "gpu")
    weights = tmp_path / "studio.pt"
    from training.checkpoints import save_checkpoint

    save_checkpoint(default, "engagement-cpu", weights)
    main(["--weights", str(weights), "--out", str(tmp_path), "--flavour", "gpu", "--add-version", "3"])
    assert (tmp_path / "engagement" / "3" / "model.onnx").is_file()  # build_plans.sh plans every version
    assert not (tmp_path / "engagement" / "3" / "model.py").exists()  # no python backend in the GPU flavour
    with pytest.raises(ValueError, match="already has version 3"):
        main(["--weights", str(weights), "--out", str(tmp_path), "--flavour", "gpu", "--add-version", "3"])
