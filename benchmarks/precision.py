"""Served faster than in-process fp32 (issue 16, goal 1): int8, fused preprocessing and the python backend's
requested outputs against the fp32 graph served before → the "precision" section of docs/benchmarks.md.

    make bench-precision        # = .venv/bin/python -m benchmarks.precision   (~7 min on 2 cores)

For expression_encoder and face_detector, in one run on the same cores:

1. In-process ONNX Runtime at batch 16 (all cores, one inter-op thread: the python backend's own session options)
   on three graphs exported here from the shipped weights: the fp32 graph as traced (what was served before this
   change: the issue's baseline), the same with the pixel normalisation folded (export/graph_passes.py), and the
   served int8 graph (export/quantize.py). One-second blocks of each graph in turn, so the neighbours' load falls
   on all three alike (in_process says why not batch by batch).
2. Triton (CPU flavour, python backend) measured by perf_analyzer (`make perf-env`), one-image requests, at
   concurrency 1 and 16: a repository serving the baseline graphs with the settings of before, then one serving
   what `make repository` now writes, alternated twice (A B A B) and averaged, since one server at a time has the
   cores. The goal's ratio: served infer/s at concurrency 16 ÷ in-process baseline images/s at batch 16 (≥ 1.5).
3. Accuracy: training/evaluate_precision.py's gates (the suite's, tests/test_precision.py) on sets twice the
   suite's size.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.perf import Measurement, PerfAnalyzer, measure, serving, warm_up
from benchmarks.report import write_section
from export.triton_repository import CPU_SERVING, FP32_REFERENCE, ServingSettings, write_model
from facecast.config import PROJECT_ROOT
from facecast.vocab import EXPRESSION_ENCODER, FACE_DETECTOR
from training.evaluate_precision import GATES, MAX_POINT_LOSS, MIN_AGREEMENT, failures, gate_sizes, session

MODELS = (EXPRESSION_ENCODER, FACE_DETECTOR)
BATCH = 16
TARGET = 1.5
CONCURRENCY = (1, 16)
ROUNDS = 2


def export_variants(work: Path) -> dict[str, dict[str, Path]]:
    """{model: {"traced fp32": path, "folded fp32": path, "int8": path}} and the two repositories under `work`."""
    from training.checkpoints import load_checkpoint

    graphs: dict[str, dict[str, Path]] = {}
    for name in MODELS:
        network = load_checkpoint(PROJECT_ROOT / "weights" / f"{name}-cpu.pt")
        served = CPU_SERVING.get(name, ServingSettings())
        before = replace(served, precision="fp32")
        baseline = write_model(work / "baseline", network, "cpu", before, fuse_preprocessing=False)
        # the int8 candidate with the served scheduling, whether or not CPU_SERVING serves it in int8 (render says)
        now = write_model(work / "served", network, "cpu", replace(served, precision="int8"))
        graphs[name] = {"traced fp32": baseline, "folded fp32": now.with_name(FP32_REFERENCE), "int8": now}
    return graphs


def in_process(graphs: dict[str, Path], seconds: float, block_s: float = 1.0) -> dict[str, float]:
    """Images/s of each graph at batch BATCH: blocks of `block_s` per graph in turn until each has run ~`seconds`.

    Blocks, not batch-by-batch interleaving: each session's ONNX Runtime pool spins for a while after a run, and
    with three sessions alternating batch by batch those spinning threads took the cores from the next session
    (the traced graph measured 462 images/s that way against ~1,000-1,140 alone). One session at a time, with
    ONNX Runtime's defaults (spinning on), is the strongest in-process baseline."""
    sessions = {label: session(path) for label, path in graphs.items()}
    shape = [BATCH, *sessions["int8"].get_inputs()[0].shape[1:]]
    feed = {"image": np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)}
    spent = dict.fromkeys(sessions, 0.0)
    batches = dict.fromkeys(sessions, 0)
    while min(spent.values()) < seconds:
        for label, graph in sessions.items():
            graph.run(None, feed)  # back into cache and its pool awake, outside the clock
            began = time.perf_counter()
            while time.perf_counter() - began < block_s:
                graph.run(None, feed)
                batches[label] += 1
            spent[label] += time.perf_counter() - began
    return {label: batches[label] * BATCH / spent[label] for label in sessions}


def triton_rounds(analyzer: PerfAnalyzer, work: Path, measurement: Measurement) -> dict:
    """{(variant, model, concurrency): [PerfResult per round]} for the baseline and served repositories."""
    cells: dict = {}
    for round_index in range(ROUNDS):
        for variant in ("baseline", "served"):
            run_dir = work / f"{variant}-{round_index}"
            run_dir.mkdir()
            with serving(1, work / variant, run_dir, "") as (url, servers):
                for model in MODELS:
                    warm_up(analyzer, model, "1", url, [], 64, run_dir)
                    for concurrency in CONCURRENCY:
                        cell = measure(analyzer, model, "1", url, servers, concurrency, [], measurement, run_dir)
                        cells.setdefault((variant, model, concurrency), []).append(cell)
                        print(
                            f"precision: {variant:8s} {model:18s} c {concurrency:2d} round {round_index + 1}: "
                            f"{cell.infer_per_s:7.1f} infer/s p50 {cell.p50_ms:6.1f} p95 {cell.p95_ms:6.1f} ms",
                            flush=True,
                        )
    return cells


def _mean(cells, field: str) -> float:
    return statistics.fmean(getattr(cell, field) for cell in cells)


def render(speeds: dict, cells: dict, gates: dict, seconds: float, measurement: Measurement) -> str:
    lines = [
        "## Served faster than in-process fp32: int8, fused preprocessing, requested outputs (issue 16, goal 1)",
        "",
        "`python -m benchmarks.precision` (`make bench-precision`). Baseline = the fp32 graph as traced, served "
        "with the settings of before; served = what `make repository` writes now (int8 QDQ, export/quantize.py; "
        "pixel normalisation folded, export/graph_passes.py). In-process: ONNX Runtime in this process, batch "
        f"{BATCH}, all cores, 1-s blocks of each graph in turn, ~{seconds:.0f} s per graph. Triton: perf_analyzer "
        f"2.51, one-image requests, {measurement.windows} windows of {measurement.measurement_ms} ms per cell, "
        f"baseline and served repositories alternated {ROUNDS}× (A B A B) and averaged; the server and "
        "perf_analyzer share the same 2 cores.",
        "",
        "| model | in-process traced fp32 img/s | folded fp32 | int8 (served graph) | int8 ÷ traced |",
        "|---|---|---|---|---|",
    ]
    for model in MODELS:
        s = speeds[model]
        lines.append(
            f"| {model} | {s['traced fp32']:.0f} | {s['folded fp32']:.0f} ({s['folded fp32'] / s['traced fp32']:.2f}×)"
            f" | {s['int8']:.0f} | {s['int8'] / s['traced fp32']:.2f}× |"
        )
    lines += [
        "",
        "| model | concurrency | Triton baseline infer/s (rounds) | p95 ms | Triton served infer/s (rounds) | p95 ms "
        "| served ÷ baseline |",
        "|---|---|---|---|---|---|---|",
    ]
    for model in MODELS:
        for concurrency in CONCURRENCY:
            a, b = cells[("baseline", model, concurrency)], cells[("served", model, concurrency)]
            lines.append(
                f"| {model} | {concurrency} | {_mean(a, 'infer_per_s'):.0f} "
                f"({' / '.join(f'{c.infer_per_s:.0f}' for c in a)}) | {_mean(a, 'p95_ms'):.1f} "
                f"| {_mean(b, 'infer_per_s'):.0f} ({' / '.join(f'{c.infer_per_s:.0f}' for c in b)}) "
                f"| {_mean(b, 'p95_ms'):.1f} | {_mean(b, 'infer_per_s') / _mean(a, 'infer_per_s'):.2f}× |"
            )
    int8_served = [m for m in MODELS if CPU_SERVING.get(m, ServingSettings()).precision == "int8"]
    lines += [
        "",
        f"'served' = the int8 graph with the served scheduling; served in int8 today: {', '.join(int8_served)} "
        "(export/triton_repository.py CPU_SERVING says why the others stay fp32).",
    ]
    lines += ["", "| goal (concurrency 16 ÷ in-process traced fp32 at batch 16) | before | int8 | target | met |"]
    lines.append("|---|---|---|---|---|")
    for model in MODELS:
        reference = speeds[model]["traced fp32"]
        before = _mean(cells[("baseline", model, 16)], "infer_per_s") / reference
        now = _mean(cells[("served", model, 16)], "infer_per_s") / reference
        lines.append(f"| {model} | {before:.2f}× | {now:.2f}× | ≥ {TARGET}× | {'yes' if now >= TARGET else 'no'} |")
    lines += [
        "",
        f"Accuracy gates (training/evaluate_precision.py; the suite holds the same on half these sets): main metric "
        f"loss ≤ {MAX_POINT_LOSS} point, agreement with fp32 ≥ {MIN_AGREEMENT:.0%}.",
        "",
        "| model | held-out set | metric | fp32 | int8 | loss (points) | agreement with fp32 | passes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model, result in gates.items():
        agreement = "; ".join(f"{name} {value:.2%}" for name, value in result["agreement"].items())
        extra = ""
        if "recall" in result:
            extra = f"; recall {result['recall'][0]:.3f} → {result['recall'][1]:.3f}"
        lines.append(
            f"| {model} | {result['held_out']} | {result['metric']}{extra} | {result['fp32']:.4f} | "
            f"{result['reduced']:.4f} | {100 * (result['fp32'] - result['reduced']):.2f} | {agreement} | "
            f"{'yes' if not failures(result) else '; '.join(failures(result))} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="in-process compute per graph")
    parser.add_argument("--measurement-ms", type=int, default=3000)
    parser.add_argument("--perf-env", type=Path, default=PROJECT_ROOT / ".venv-perf")
    parser.add_argument("--gate-scale", type=int, default=2)
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args(argv)
    analyzer = PerfAnalyzer.locate(args.perf_env)
    measurement = Measurement(measurement_ms=args.measurement_ms)
    work = Path(tempfile.mkdtemp(prefix="facecast-precision-"))
    try:
        graphs = export_variants(work)
        speeds = {model: in_process(graphs[model], args.seconds) for model in MODELS}
        print("precision: in-process", speeds, flush=True)
        cells = triton_rounds(analyzer, work, measurement)
        sizes = gate_sizes(args.gate_scale)
        gates = {
            model: GATES[model](graphs[model]["folded fp32"], graphs[model]["int8"], **sizes[model]) for model in MODELS
        }
        markdown = render(speeds, cells, gates, args.seconds, measurement)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(markdown)
    if not args.no_doc:
        print(f"wrote {write_section('precision', markdown)}")


if __name__ == "__main__":
    main()
