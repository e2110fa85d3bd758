"""Write the Triton model repository from trained weights: CPU flavour (python backend + ONNX Runtime) or GPU
flavour (TensorRT plan), with identical names, shapes and dtypes (docs/architecture.md, serving contract).

    python -m export.triton_repository --weights weights/expression_encoder-cpu.pt --out model_repository
    python -m export.triton_repository --weights weights/expression_encoder-cpu.pt --out model_repository_gpu \\
        --flavour gpu

The GPU flavour writes config.pbtxt and model.onnx; export/tensorrt/build_plans.sh turns the ONNX into model.plan
inside NVIDIA's Triton container of the pinned version.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from export.onnx_export import example_serving_inputs, export_onnx, onnx_matches_torch

PYTHON_BACKEND_MODEL = Path(__file__).parent / "python_backend" / "model.py"
# Beside an int8 model.onnx: the fp32 graph it was quantized from. Triton never loads it; the accuracy gates and the
# precision benchmark compare against it, and the torch check at export applies to it.
FP32_REFERENCE = "model.fp32.onnx"
TRITON_DTYPES = {"UINT8": "TYPE_UINT8", "FP32": "TYPE_FP32", "INT64": "TYPE_INT64", "INT32": "TYPE_INT32"}
# config.pbtxt parameter naming the weights version 1 serves (weights_sha256). Clients put it in what identifies a
# result (facecast.clips.pipeline's report fingerprint), so shipping new weights under the same version number
# retires the results the old ones made without anyone having to remember to. Only version 1 needs it: it is the one
# `make repository` rewrites in place, while a studio's versions ≥ 2 are written once and never replaced.
WEIGHTS_PARAMETER = "weights_sha256"


@dataclass(frozen=True)
class ServingSettings:
    """Batching and instance settings of one served model; docs/benchmarks.md holds the measurements behind them."""

    max_batch_size: int = 64
    dynamic_batching: bool = True
    max_queue_delay_us: int = 0
    instance_count: int = 1
    intra_op_threads: int = 0  # ONNX Runtime threads per instance; 0 = all cores
    preferred_batch_sizes: tuple[int, ...] = ()  # batch sizes the dynamic batcher waits for (up to the delay)
    # ONNX Runtime's idle pool threads busy-wait for the next run (its default). Under one-row load spinning served
    # 1.11-1.25× more per model at concurrency 16 and cut a lone request's p50 (docs/benchmarks.md "batching"); on
    # `facecast analyze`, whose client decodes video on the same cores, it cost the Triton tree 0.94 instead of
    # 0.58 CPU-s and the analysis 1.81 instead of 1.73 s ("analysis-settings"). So: off for the analysis's models.
    spinning: bool = True
    # "int8": the CPU flavour serves a statically quantized graph (export/quantize.py) and keeps the fp32 one beside
    # it as FP32_REFERENCE; only for models whose accuracy gate is in the suite (tests/test_precision.py).
    precision: str = "fp32"


# Scheduling chosen per model on its own traffic. The analysis's models (face_detector, expression_encoder,
# engagement: one client sending batches of frames and faces while it decodes) from `facecast analyze` itself
# (docs/benchmarks.md "analysis-settings": one instance on both cores, idle threads asleep, 1.73 s per 30-s clip;
# spinning 1.81 s; two single-thread instances 1.91 s). The library's models (one-row queries from many sessions)
# from `make bench-batching` ("batching": perf_analyzer, five settings at concurrency 1 and 16, the rule in
# benchmarks/batching.py): dynamic batching without a queue delay (a 1-ms delay or preferred sizes never beat it by
# more than the noise and doubled a lone request's p50), idle threads spinning, and two single-thread instances for
# query_fuser (3,435 vs 3,287 infer/s when chosen; the 2026-12-07 run measured the same configuration three times at
# 3,054-3,321, so that choice is within the noise). For one-row load the rule would give expression_encoder two
# instances (1,688 vs 1,143 infer/s on 2026-12-07): the analysis comes first. int8: docs/benchmarks.md "precision"
# (`make bench-precision`); tests/test_precision.py holds each int8 model to ≤ 0.5 point of its main metric and
# ≥ 99 % agreement with fp32.
ANALYSIS = {"spinning": False}
CPU_SERVING = {
    "expression_encoder": ServingSettings(precision="int8", **ANALYSIS),
    # fp32: its int8 recipe (export/quantize.py) passes its own gate (AP50 −0.22 point, 99.25 % of held-out faces
    # decided alike) but served in int8 it moved the studio calibration's ranking of held-out clips from 0.717 to
    # 0.667 Spearman (tests/test_calibrate_browser.py, floor 0.672; fp32 detector with int8 encoder: passes)
    "face_detector": ServingSettings(**ANALYSIS),
    "engagement": ServingSettings(**ANALYSIS),
    "query_fuser": ServingSettings(instance_count=2, intra_op_threads=1),
    # compute-bound (ONNX Runtime gains 1.03× from batch 2): batching buys it 1.09× at concurrency 16 at best
    "style_mapper": ServingSettings(),
}
# Not measured: no GPU was available when this was written (docs/benchmarks.md says so). Starting point from Triton's
# own guidance for small CNNs; `make bench` on a GPU host should replace it.
GPU_SERVING = {"expression_encoder": ServingSettings(max_batch_size=128, max_queue_delay_us=500, instance_count=2)}


# Models a studio adds versions to (a calibrated engagement model: facecast.calibration). Triton loads every version
# (version_policy all) and each client names the version it wants, so activating or rolling back a version is a
# row in the store, not a reload; version 1 is always the shipped default, and `make repository` rewrites only it.
VERSIONED_MODELS = {"engagement"}


def bounds_parameter(bounds: dict[str, tuple[float, float]]) -> str:
    """`name:low:high;…`, read back by export/python_backend/model.py (a plain string: config.pbtxt has no lists)."""
    return ";".join(f"{name}:{low:g}:{high:g}" for name, (low, high) in sorted(bounds.items()))


def scheduling_lines(settings: ServingSettings, flavour: str) -> list[str]:
    """The config.pbtxt entries `settings` decide: batching, instances and (CPU flavour) ONNX Runtime threads.
    benchmarks/batching.py swaps exactly these in a built repository to measure other settings."""
    lines = []
    if settings.dynamic_batching:
        preferred = ""
        if settings.preferred_batch_sizes:
            preferred = f"  preferred_batch_size: [ {', '.join(map(str, settings.preferred_batch_sizes))} ]\n"
        lines.append(
            f"dynamic_batching {{\n{preferred}  max_queue_delay_microseconds: {settings.max_queue_delay_us}\n}}"
        )
    kind = "KIND_CPU" if flavour == "cpu" else "KIND_GPU"
    lines.append(f"instance_group [\n  {{\n    count: {settings.instance_count}\n    kind: {kind}\n  }}\n]")
    if flavour == "cpu":
        lines.append(
            'parameters: {\n  key: "intra_op_threads"\n'
            f'  value: {{ string_value: "{settings.intra_op_threads:d}" }}\n}}'
        )
        lines.append(
            f'parameters: {{\n  key: "intra_op_spinning"\n  value: {{ string_value: "{int(settings.spinning)}" }}\n}}'
        )
    return lines


def weights_sha256(network, precision: str = "fp32") -> str:
    """SHA-256 of a network's weights and the precision they are served in: the same for every export of the same
    weights (unlike the ONNX file's bytes, which depend on the exporter), different when any weight changes."""
    digest = hashlib.sha256(precision.encode())
    for name, tensor in sorted(network.state_dict().items()):
        value = tensor.detach().cpu()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
        # through float32 because numpy has no bfloat16; the dtype above still tells precisions apart
        digest.update((value.float() if value.is_floating_point() else value).contiguous().numpy().tobytes())
    return digest.hexdigest()


def served_weights_sha256(config: str) -> str:
    """The weights_sha256 parameter of a config.pbtxt ("" when it has none: written before it existed)."""
    match = re.search(rf'key: "{WEIGHTS_PARAMETER}"\s*value: {{ string_value: "([0-9a-f]*)" }}', config)
    return match.group(1) if match else ""


def config_pbtxt(
    name: str,
    signature: dict,
    flavour: str,
    settings: ServingSettings,
    bounds: dict[str, tuple[float, float]] | None = None,
    weights: str = "",
) -> str:
    """The model's config.pbtxt. `bounds` (valid values per input) go to the CPU flavour's python backend, which
    refuses a request outside them with a message naming the input; TensorRT has no such hook (see model.py).
    `weights`: weights_sha256 of version 1's network (WEIGHTS_PARAMETER)."""

    def tensors(kind: str) -> str:
        entries = []
        for tensor_name, dtype, dims in signature[kind]:
            entries.append(
                f'  {{\n    name: "{tensor_name}"\n    data_type: {TRITON_DTYPES[dtype]}\n'
                f"    dims: [ {', '.join(str(d) for d in dims)} ]\n  }}"
            )
        return "[\n" + ",\n".join(entries) + "\n]"

    if flavour == "cpu":
        lines = [f'name: "{name}"', 'backend: "python"']
    elif flavour == "gpu":
        lines = [f'name: "{name}"', 'platform: "tensorrt_plan"']
    else:
        raise ValueError(f"flavour must be cpu or gpu, not {flavour!r}")
    lines += [
        f"max_batch_size: {settings.max_batch_size}",
        f"input {tensors('inputs')}",
        f"output {tensors('outputs')}",
    ]
    lines += scheduling_lines(settings, flavour)
    if name in VERSIONED_MODELS:
        lines.append("version_policy: { all { } }")
    if flavour == "cpu":
        if bounds:
            lines.append(
                f'parameters: {{\n  key: "input_bounds"\n  value: {{ string_value: "{bounds_parameter(bounds)}" }}\n}}'
            )
    if weights:
        lines.append(f'parameters: {{\n  key: "{WEIGHTS_PARAMETER}"\n  value: {{ string_value: "{weights}" }}\n}}')
    return "\n".join(lines) + "\n"


def write_model(
    repository: Path,
    network,
    flavour: str = "cpu",
    settings: ServingSettings | None = None,
    version: int = 1,
    fuse_preprocessing: bool = True,
) -> Path:
    """Export `network` into repository/<triton_name>/ atomically (a half-written model never appears).
    `fuse_preprocessing=False` (with fp32 settings) writes the graph as traced: the precision benchmark's baseline."""
    name = network.config.triton_name
    settings = settings or (CPU_SERVING if flavour == "cpu" else GPU_SERVING).get(name, ServingSettings())
    repository.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=repository))
    staging.chmod(0o755)  # mkdtemp makes it private; the server may run as another user
    try:
        version_dir = staging / str(version)
        version_dir.mkdir()
        onnx_path = export_onnx(network, version_dir / "model.onnx", fuse_preprocessing=fuse_preprocessing)
        if flavour == "cpu" and settings.precision == "int8":
            from export.quantize import quantize_served_model

            quantize_served_model(name, onnx_path.rename(version_dir / FP32_REFERENCE), onnx_path)
        elif settings.precision != "fp32":
            raise ValueError(f"{name}: precision {settings.precision!r} is not served by the {flavour} flavour")
        if flavour == "cpu":
            shutil.copy(PYTHON_BACKEND_MODEL, version_dir / "model.py")
        bounds = network.serving_bounds() if hasattr(network, "serving_bounds") else {}
        weights = weights_sha256(network, settings.precision) if version == 1 else ""
        (staging / "config.pbtxt").write_text(
            config_pbtxt(name, network.serving_signature(), flavour, settings, bounds, weights)
        )
        target = repository / name
        if name in VERSIONED_MODELS:  # keep the studio's calibrated versions beside the rewritten default
            for other in _version_dirs(target):
                if other.name != str(version):
                    shutil.copytree(other, staging / other.name)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target / str(version) / onnx_path.name


def fp32_graph(onnx_path: Path) -> Path:
    """The fp32 graph behind a served model.onnx: its FP32_REFERENCE when it is int8, else itself."""
    reference = onnx_path.with_name(FP32_REFERENCE)
    return reference if reference.is_file() else onnx_path


def _version_dirs(model_dir: Path) -> list[Path]:
    if not model_dir.is_dir():
        return []
    return sorted((p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))


def add_version(repository: Path, network, flavour: str = "cpu", version: int | None = None) -> int:
    """Export `network` as a new version of its served model (repository/<name>/<N>/; N: the next one unless given),
    beside the versions there; returns N. The new version must have the served signature (same inputs and outputs),
    it is checked against torch before it appears, and it appears whole (renamed into place) or not at all. The GPU
    flavour writes model.onnx; export/tensorrt/build_plans.sh turns it into the plan, as for version 1."""
    name = network.config.triton_name
    if name not in VERSIONED_MODELS:
        raise ValueError(f"{name} is not a versioned model ({', '.join(sorted(VERSIONED_MODELS))})")
    model_dir = repository / name
    config_path = model_dir / "config.pbtxt"
    if not config_path.is_file():
        raise FileNotFoundError(f"{model_dir} has no config.pbtxt: build the repository first (`make repository`)")
    settings = (CPU_SERVING if flavour == "cpu" else GPU_SERVING).get(name, ServingSettings())
    bounds = network.serving_bounds() if hasattr(network, "serving_bounds") else {}
    served_config = config_path.read_text()
    # version 1's weights are unchanged by adding a version: its digest stays in the config
    config = config_pbtxt(
        name, network.serving_signature(), flavour, settings, bounds, served_weights_sha256(served_config)
    )
    if _signature_lines(served_config) != _signature_lines(config):
        raise ValueError(f"the new {name} network's inputs or outputs differ from the served ones ({config_path})")
    existing = {int(p.name) for p in _version_dirs(model_dir)}
    if version is None:
        version = max(existing, default=0) + 1
    elif version in existing or version < 1:
        raise ValueError(f"{model_dir} already has version {version}" if version in existing else "versions start at 1")
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-{version}-", dir=repository))
    staging.chmod(0o755)
    try:
        onnx_path = export_onnx(network, staging / "model.onnx")
        differences = onnx_matches_torch(network, onnx_path, example_serving_inputs(network.serving_signature(), 4))
        if max(differences.values()) > 1e-3:
            raise RuntimeError(f"the exported {name} graph does not answer like torch (max |Δ| {differences})")
        if flavour == "cpu":
            shutil.copy(PYTHON_BACKEND_MODEL, staging / "model.py")
        staging.rename(model_dir / str(version))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if served_config != config:  # a repository written before versions existed: allow them now
        temporary = config_path.with_name(".config.pbtxt.tmp")
        temporary.write_text(config)
        temporary.replace(config_path)
    return version


def _signature_lines(config: str) -> str:
    """The part of a config.pbtxt that a new version must keep: name, inputs, outputs, batch size."""
    return config.split("dynamic_batching")[0].split("instance_group")[0]


def write_repository(repository: Path, weights: list[Path], flavour: str = "cpu") -> list[Path]:
    """Export every checkpoint into one repository (one Triton model each); returns the ONNX paths.

    Each export is checked against torch on random serving inputs before the next one starts, so a repository
    that `make repository` finishes is one whose every model answers like the network it came from."""
    from training.checkpoints import load_checkpoint

    written = []
    for path in weights:
        network = load_checkpoint(path)
        onnx_path = write_model(repository, network, flavour)
        probe = example_serving_inputs(network.serving_signature(), batch=4)
        differences = onnx_matches_torch(network, fp32_graph(onnx_path), probe)
        pictures = {name for name, dtype, _ in network.serving_signature()["outputs"] if dtype == "UINT8"}
        worst = max((d for name, d in differences.items() if name not in pictures), default=0.0)
        note = f"; uint8 pictures within {max(differences[name] for name in pictures):.0f} level" if pictures else ""
        if fp32_graph(onnx_path) != onnx_path:
            note += "; served in int8 (export/quantize.py), the fp32 graph kept as " + FP32_REFERENCE
        print(
            f"[export] {path} → {onnx_path.parent.parent} ({flavour}); ONNX Runtime vs torch max |Δ| {worst:.1e}" + note
        )
        written.append(onnx_path)
    # text_query (export/text_query.py): text_embedder + query_fuser in one graph, whenever both were exported here
    from export.text_query import write_beside

    written += write_beside(repository, weights, flavour)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, nargs="+", required=True, help="checkpoint(s) to export")
    parser.add_argument("--out", type=Path, required=True, help="model repository folder")
    parser.add_argument("--flavour", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument(
        "--add-version",
        type=int,
        metavar="N",
        help="add the weights as version N of their model beside the versions there (a studio's calibrated "
        "engagement model into a GPU repository: the same N as in the CPU one) instead of rewriting version 1",
    )
    args = parser.parse_args(argv)
    if args.add_version is not None:
        from training.checkpoints import load_checkpoint

        for path in args.weights:
            version = add_version(args.out, load_checkpoint(path), args.flavour, args.add_version)
            print(f"[export] {path} → {args.out} version {version} ({args.flavour})")
        return
    write_repository(args.out, args.weights, args.flavour)


if __name__ == "__main__":
    main()
