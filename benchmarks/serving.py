"""Serving benchmark for one served network: Triton with dynamic batching on and off, at several concurrencies,
against in-process ONNX Runtime at the same batch size, side by side in one run. Writes a section of
docs/benchmarks.md ("serving" for expression_encoder, "serving-<model>" for the others), which is where
export/triton_repository.py's CPU_SERVING settings come from.

    python -m benchmarks.serving [--weights weights/expression_encoder-cpu.pt] [--seconds 6]
    python -m benchmarks.serving --weights weights/style_mapper-cpu.pt --concurrency 1 4

Every client request carries ONE row (one face), as the analysis pipeline's per-track requests and the app's
mapping requests do; batching is Triton's job. The load generator runs on the same 2 cores as the server, so
Triton numbers include that client cost.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import requests

from benchmarks.report import write_section
from export.onnx_export import example_serving_inputs
from export.triton_repository import CPU_SERVING, ServingSettings, write_model
from facecast.config import Settings
from facecast.serving.client import TritonModelClient
from facecast.serving.process import running_server
from training.checkpoints import load_checkpoint
from training.evaluation import markdown_table

VARIANTS = {
    "no batching": ServingSettings(dynamic_batching=False, instance_count=1),
    "dynamic, delay 0": ServingSettings(max_queue_delay_us=0, instance_count=1),
    "dynamic, delay 2 ms": ServingSettings(max_queue_delay_us=2000, instance_count=1),
    "dynamic, delay 2 ms, 2 instances × 1 thread": ServingSettings(
        max_queue_delay_us=2000, instance_count=2, intra_op_threads=1
    ),
}
CONCURRENCY = (1, 4, 16)


@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies_ms: np.ndarray
    mean_batch: float
    client_cpu_seconds: float  # CPU the load generator itself burned: taken from the server's 2 cores

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds


def model_counts(url: str, model: str) -> tuple[int, int]:
    stats = requests.get(f"http://{url}/v2/models/{model}/stats", timeout=10).json()["model_stats"][0]
    return int(stats["inference_count"]), int(stats["execution_count"])


def drive_load(
    url: str, model: str, rows: dict[str, np.ndarray], concurrency: int, seconds: float, max_requests: int = 200_000
) -> LoadResult:
    """`concurrency` threads, each sending one-row requests back to back for `seconds` (bounded in count too)."""
    client = TritonModelClient(model, url)
    _ = client.signature  # the property fetches the model config once, outside the timed window
    count = len(next(iter(rows.values())))
    for _ in range(3):
        client.infer({name: value[:1] for name, value in rows.items()})
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    stop = threading.Event()

    def worker(slot: int) -> None:
        rng = np.random.default_rng(slot)
        while not stop.is_set() and len(latencies[slot]) < max_requests // concurrency:
            index = int(rng.integers(count))
            start = time.perf_counter()
            client.infer({name: value[index : index + 1] for name, value in rows.items()})
            latencies[slot].append((time.perf_counter() - start) * 1000)

    before = model_counts(url, model)
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    elapsed = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    after = model_counts(url, model)
    inferences, executions = after[0] - before[0], after[1] - before[1]
    all_latencies = np.array([value for slot in latencies for value in slot])
    return LoadResult(len(all_latencies), elapsed, all_latencies, inferences / max(executions, 1), client_cpu)


def in_process_onnxruntime(
    onnx_path: Path, rows: dict[str, np.ndarray], batch: int, seconds: float
) -> tuple[float, float]:
    """Rows/s and p50 ms per batch of ONNX Runtime called directly (all cores), the ceiling Triton is held to."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    feed = {name: np.ascontiguousarray(value[:batch]) for name, value in rows.items()}
    for _ in range(3):
        session.run(None, feed)
    timings = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        session.run(None, feed)
        timings.append(time.perf_counter() - start)
    return batch * len(timings) / sum(timings), 1000 * float(np.median(timings))


def run(network, weights: Path, seconds: float, http_port: int, concurrencies: tuple[int, ...] = CONCURRENCY) -> str:
    """The benchmark section for `network` (loaded from `weights`, which the section names)."""
    model = network.config.triton_name
    requests_rows = example_serving_inputs(network.serving_signature(), 256)
    rows = []
    onnx_path = None
    with tempfile.TemporaryDirectory(prefix="facecast-bench-") as scratch:
        for variant, serving in VARIANTS.items():
            repository = Path(scratch) / variant.replace(" ", "_").replace(",", "").replace("×", "x")
            onnx_path = write_model(repository, network, "cpu", serving)
            settings = Settings().with_overrides(
                http_port=http_port, grpc_port=http_port + 1, metrics_port=http_port + 2, model_repository=repository
            )
            with running_server(settings, model_repository=repository):
                for concurrency in concurrencies:
                    result = drive_load(settings.triton_url, model, requests_rows, concurrency, seconds)
                    rows.append(
                        {
                            "setting": variant,
                            "concurrency": concurrency,
                            "images/s": result.throughput,
                            "p50 ms": float(np.percentile(result.latencies_ms, 50)),
                            "p95 ms": float(np.percentile(result.latencies_ms, 95)),
                            "mean batch": result.mean_batch,
                            "client CPU %": 100 * result.client_cpu_seconds / result.seconds,
                        }
                    )
                    print(
                        f"[bench] {variant:45s} c={concurrency:2d}: {result.throughput:7.1f} img/s "
                        f"p50 {rows[-1]['p50 ms']:.1f} ms, mean batch {result.mean_batch:.1f}",
                        flush=True,
                    )
        table = pd.DataFrame(rows)
        chosen_name = next((name for name, value in VARIANTS.items() if value == CPU_SERVING[model]), None)
        if chosen_name is None:
            raise SystemExit(
                f"{model} is served with {CPU_SERVING[model]}, not one of this script's variants: its settings come "
                "from benchmarks/batching.py (make bench-batching), which measures every served model"
            )
        top = max(concurrencies)
        at16 = table[table["concurrency"] == top].set_index("setting")
        batch16 = max(1, int(round(at16.loc[chosen_name, "mean batch"])))
        ort_same_batch, ort_same_batch_ms = in_process_onnxruntime(onnx_path, requests_rows, batch16, seconds)
        ort_one, ort_one_ms = in_process_onnxruntime(onnx_path, requests_rows, 1, seconds)

    dynamic_gain = at16.loc[chosen_name, "images/s"] / at16.loc["no batching", "images/s"]
    triton_vs_ort = at16.loc[chosen_name, "images/s"] / ort_same_batch
    targets = ("≥ 3×", "≥ 0.8") if model == "expression_encoder" else ("—", "—")
    what = "64-px faces" if model == "expression_encoder" else "inputs of the model's serving signature"
    lines = [
        f"## {model} serving settings",
        "",
        f"`python -m benchmarks.serving --weights {weights}`: one-row requests from Python client threads on the "
        f"same 2 cores as the server, {seconds:.0f} s per cell, random {what}. 'mean batch' is Triton's own count "
        "(inferences / executions) over the cell; 'client CPU %' is the load generator's own CPU time over the "
        "cell's wall time (100 % = one of the two cores taken from the server). 'images/s' counts rows.",
        "",
        markdown_table(table, index=False, floatfmt=".1f"),
        "",
        f"In-process ONNX Runtime, same ONNX file, all cores: batch {batch16} (Triton's mean batch for the chosen "
        f"setting at concurrency {top}) {ort_same_batch:.1f} rows/s ({ort_same_batch_ms:.1f} ms per batch); "
        f"batch 1 {ort_one:.1f} rows/s ({ort_one_ms:.2f} ms): batching itself is worth "
        f"{ort_same_batch / ort_one:.2f}× to ONNX Runtime on this CPU.",
        "",
        # the targets are issue 2's, set for the expression encoder
        f"| ratio at concurrency {top} | value | target |",
        "|---|---|---|",
        f"| chosen setting (`{chosen_name}`) ÷ no batching | {dynamic_gain:.2f}× | {targets[0]} |",
        f"| chosen setting ÷ in-process ONNX Runtime at batch {batch16} | {triton_vs_ort:.2f} | {targets[1]} |",
        "",
        f"The served config (export/triton_repository.py `CPU_SERVING`) is `{chosen_name}`; the fastest setting "
        f"at concurrency {top} in this run was `{at16['images/s'].idxmax()}`.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=Path("weights/expression_encoder-cpu.pt"))
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--http-port", type=int, default=18100, help="ports N, N+1, N+2 (not the dev server's)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(CONCURRENCY))
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    network = load_checkpoint(args.weights)
    section = run(network, args.weights, args.seconds, args.http_port, tuple(args.concurrency))
    print(section)
    if not args.no_write:
        model = network.config.triton_name
        print(f"→ {write_section('serving' if model == 'expression_encoder' else f'serving-{model}', section)}")


if __name__ == "__main__":
    main()
