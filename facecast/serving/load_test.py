"""A bounded load test of one served model, for the Ops page: a smoke test of the served path, not a benchmark
(docs/benchmarks.md has those, measured with Triton's own perf_analyzer). It only ever targets a loopback server."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from facecast.serving.client import TritonModelClient

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
MAX_LOAD_SECONDS = 5.0
MAX_CONCURRENCY = 8


@dataclass(frozen=True)
class LoadTestResult:
    model: str
    seconds: float
    concurrency: int
    requests: int
    failures: int
    throughput_per_s: float
    p50_ms: float
    p95_ms: float
    first_error: str | None = None


def is_loopback(urls: list[str]) -> bool:
    """Every endpoint is on this machine (the load test never targets a shared server)."""
    return bool(urls) and all(url.rsplit(":", 1)[0].strip("[]") in LOOPBACK_HOSTS for url in urls)


def random_inputs(client: TritonModelClient, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs of the model's served signature: pixels for UINT8, small random values for FP32, ids for INT64."""
    rng = np.random.default_rng(seed)
    inputs: dict[str, np.ndarray] = {}
    for spec in client.signature.inputs:
        shape = (batch, *spec.dims)
        if spec.dtype == np.uint8:
            inputs[spec.name] = rng.integers(0, 256, shape, dtype=np.uint8)
        elif spec.dtype == np.int64:
            inputs[spec.name] = np.ones(shape, np.int64)
        else:
            inputs[spec.name] = rng.random(shape, dtype=np.float32)
    return inputs


def load_test(urls: list[str], model: str, seconds: float = 2.0, concurrency: int = 4) -> LoadTestResult:
    """`concurrency` threads send single-row requests to `model` for `seconds` (both capped), spread over every
    endpoint the way the app's own clients spread them, on loopback only. Triton's dynamic batcher merges them: the
    statistics afterwards show the batch sizes it formed on each replica."""
    if not is_loopback(urls):
        raise ValueError(f"the load test only runs against servers on this machine, not {', '.join(urls)}")
    seconds = min(float(seconds), MAX_LOAD_SECONDS)
    concurrency = max(1, min(int(concurrency), MAX_CONCURRENCY))
    client = TritonModelClient(model, urls, timeout_s=10.0)
    inputs = random_inputs(client, 1)  # also fails fast (TritonUnavailable / ModelUnavailable) before threads start
    deadline = time.perf_counter() + seconds
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            try:
                client.infer(inputs)
            except Exception as error:  # noqa: BLE001 - counted and reported, the test goes on
                with lock:
                    errors.append(f"{error.__class__.__name__}: {error}")
                continue
            with lock:
                latencies.append(time.perf_counter() - start)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    elapsed = time.perf_counter() - started
    latency_ms = np.asarray(latencies) * 1000 if latencies else np.zeros(1)
    return LoadTestResult(
        model,
        round(elapsed, 2),
        concurrency,
        len(latencies),
        len(errors),
        round(len(latencies) / max(elapsed, 1e-9), 1),
        round(float(np.percentile(latency_ms, 50)), 2),
        round(float(np.percentile(latency_ms, 95)), 2),
        errors[0] if errors else None,
    )
