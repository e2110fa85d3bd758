"""What the Ops page reads from Triton: the statistics API, the Prometheus /metrics text, and a bounded load test.

All torch-free; HTTP with requests. The load test only ever targets a loopback server (it is a smoke test of the
served path, not a benchmark: docs/benchmarks.md has those)."""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import requests

from facecast.config import Settings
from facecast.triton_client import TritonModelClient

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
MAX_LOAD_SECONDS = 5.0
MAX_CONCURRENCY = 8
_METRIC_LINE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def model_stats(url: str, timeout: float = 5.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Triton's GET /v2/models/stats as two tables: per model and version (requests, executions, mean batch size,
    mean queue / compute time per request) and per model and batch size (executions of that size)."""
    body = requests.get(f"{_base(url)}/v2/models/stats", timeout=timeout).json()
    per_model, per_batch = [], []
    for entry in body.get("model_stats", []):
        inference = entry.get("inference_stats", {})
        success = inference.get("success", {})
        count = int(success.get("count", 0))
        executions = int(entry.get("execution_count", 0))

        def mean_ms(key: str, count: int = count) -> float:
            return round(int(inference.get(key, {}).get("ns", 0)) / max(count, 1) / 1e6, 3)

        per_model.append({"model": entry["name"], "version": entry.get("version", ""), "requests": count,
                          "executions": executions, "inferences": int(entry.get("inference_count", 0)),
                          "mean batch": round(int(entry.get("inference_count", 0)) / max(executions, 1), 2),
                          "queue ms/request": mean_ms("queue"), "compute ms/request": mean_ms("compute_infer"),
                          "failed": int(inference.get("fail", {}).get("count", 0))})
        for batch in entry.get("batch_stats", []):
            per_batch.append({"model": entry["name"], "batch size": int(batch["batch_size"]),
                              "executions": int(batch.get("compute_infer", {}).get("count", 0))})
    return pd.DataFrame(per_model), pd.DataFrame(per_batch, columns=["model", "batch size", "executions"])


def metrics(settings: Settings, timeout: float = 5.0) -> pd.DataFrame:
    """The Prometheus text of Triton's metrics port as rows (metric, model, version, value); nv_* metrics only."""
    text = requests.get(f"http://{settings.host}:{settings.metrics_port}/metrics", timeout=timeout).text
    rows = []
    for line in text.splitlines():
        match = _METRIC_LINE.match(line.strip())
        if not match or not match["name"].startswith("nv_"):
            continue
        labels = dict(_LABEL.findall(match["labels"] or ""))
        try:
            value = float(match["value"])
        except ValueError:
            continue
        rows.append({"metric": match["name"], "model": labels.get("model", ""), "version": labels.get("version", ""),
                     "value": value})
    return pd.DataFrame(rows, columns=["metric", "model", "version", "value"])


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


def is_loopback(settings: Settings) -> bool:
    return settings.host in LOOPBACK_HOSTS


def random_inputs(client: TritonModelClient, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs of the model's served signature: pixels for UINT8, small random values for FP32, ids for INT64."""
    rng = np.random.default_rng(seed)
    inputs = {}
    for spec in client.signature.inputs:
        shape = (batch, *spec.dims)
        if spec.dtype == np.uint8:
            inputs[spec.name] = rng.integers(0, 256, shape, dtype=np.uint8)
        elif spec.dtype == np.int64:
            inputs[spec.name] = np.ones(shape, np.int64)
        else:
            inputs[spec.name] = rng.random(shape, dtype=np.float32)
    return inputs


def load_test(settings: Settings, model: str, seconds: float = 2.0, concurrency: int = 4) -> LoadTestResult:
    """`concurrency` threads send single-row requests to `model` for `seconds` (both capped), on loopback only.
    Triton's dynamic batcher merges them: the statistics afterwards show the batch sizes it formed."""
    if not is_loopback(settings):
        raise ValueError(f"the load test only runs against a server on this machine, not {settings.host}")
    seconds = min(float(seconds), MAX_LOAD_SECONDS)
    concurrency = max(1, min(int(concurrency), MAX_CONCURRENCY))
    client = TritonModelClient(model, settings.triton_url, timeout_s=10.0)
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
    return LoadTestResult(model, round(elapsed, 2), concurrency, len(latencies), len(errors),
                          round(len(latencies) / max(elapsed, 1e-9), 1), round(float(np.percentile(latency_ms, 50)), 2),
                          round(float(np.percentile(latency_ms, 95)), 2), errors[0] if errors else None)


def _base(url: str) -> str:
    url = url.rstrip("/")
    return url if url.startswith(("http://", "https://")) else f"http://{url}"
