"""Triton's HTTP API as facecast reads it: health, metadata, the model index (stdlib only: urllib)."""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.error
import urllib.request

from facecast.serving.errors import ModelLoadFailed

DEFAULT_START_TIMEOUT_S = 120.0


def base_url(url: str) -> str:
    """Accept "host:port" (tritonclient style) or "http://host:port"."""
    url = url.rstrip("/")
    return url if url.startswith(("http://", "https://")) else f"http://{url}"


def _http(
    url: str, path: str, *, method: str = "GET", body: bytes | None = None, timeout: float = 5.0
) -> tuple[int, bytes]:
    request = urllib.request.Request(base_url(url) + path, data=body, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    # A fresh connection per call, closed at once: open keep-alive connections delay Triton's shutdown.
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, response.read()


def _status_ok(url: str, path: str, timeout: float) -> bool:
    try:
        status, _ = _http(url, path, timeout=timeout)
        return status == 200
    # HTTPException: something that is not an HTTP server answered. It happens while a server we start has not yet
    # bound its port: test and replica ports come from the ephemeral range, and the kernel can connect a client to
    # its own port (TCP self-connect), so the poll reads back its own request ("GET /v2/health/ready HTTP/1.1") as
    # the status line. Not ready, like a refused connection.
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError):
        return False


def is_ready(url: str, timeout: float = 2.0) -> bool:
    """GET /v2/health/ready == 200 (with --strict-readiness: every model loaded)."""
    return _status_ok(url, "/v2/health/ready", timeout)


def is_live(url: str, timeout: float = 2.0) -> bool:
    return _status_ok(url, "/v2/health/live", timeout)


def wait_until_ready(url: str, timeout: float = DEFAULT_START_TIMEOUT_S, interval: float = 0.1) -> None:
    """Poll /v2/health/ready until it answers 200; TimeoutError after `timeout` seconds.
    (For a server we start ourselves, start_server also watches the process and its log.)"""
    deadline = time.monotonic() + timeout
    while not is_ready(url, timeout=min(2.0, max(0.1, timeout))):
        if time.monotonic() > deadline:
            raise TimeoutError(f"Triton at {base_url(url)} was not ready after {timeout:g} s")
        time.sleep(interval)


def server_metadata(url: str, timeout: float = 5.0) -> dict:
    """GET /v2: {"name": "triton", "version": "2.51.0", "extensions": [...]}."""
    _, body = _http(url, "/v2", timeout=timeout)
    return json.loads(body)


def model_index(url: str, timeout: float = 5.0) -> list[dict]:
    """POST /v2/repository/index: [{"name", "version", "state" ("READY", "UNAVAILABLE", ...), "reason"?}, ...]."""
    _, body = _http(url, "/v2/repository/index", method="POST", body=b"{}", timeout=timeout)
    return json.loads(body)


def ready_models(url: str, timeout: float = 5.0) -> list[str]:
    """Names of the models whose state is READY."""
    return sorted({entry["name"] for entry in model_index(url, timeout) if entry.get("state") == "READY"})


def model_versions(url: str, model: str, timeout: float = 5.0) -> dict[int, str]:
    """{version: state} of one model on one server (from the model index; a model never loaded has none)."""
    return {
        int(entry["version"]): str(entry.get("state", ""))
        for entry in model_index(url, timeout)
        if entry.get("name") == model and str(entry.get("version", "")).isdigit()
    }


def load_model(url: str, model: str, timeout: float = 120.0) -> None:
    """POST /v2/repository/models/<model>/load: (re)load a model from the repository, e.g. after a version was
    added. Needs --model-control-mode=explicit. Triton keeps serving the loaded versions until the new set is ready,
    and keeps the old set when the load fails; then this raises ModelLoadFailed with Triton's reason."""
    try:
        _http(url, f"/v2/repository/models/{model}/load", method="POST", body=b"{}", timeout=timeout)
    except urllib.error.HTTPError as error:
        try:
            reason = json.loads(error.read()).get("error", str(error))
        except ValueError:
            reason = str(error)
        raise ModelLoadFailed(f"{base_url(url)}: loading {model} failed: {reason}") from None


def model_config(url: str, model: str, timeout: float = 5.0) -> dict:
    """GET /v2/models/<model>/config: the served config.pbtxt as JSON."""
    _, body = _http(url, f"/v2/models/{model}/config", timeout=timeout)
    return json.loads(body)


def batching_settings(config: dict) -> dict:
    """The batching and instance settings of a served config (the numbers behind them: docs/benchmarks.md)."""
    batching = config.get("dynamic_batching")
    groups = config.get("instance_group", [])
    return {
        "max batch": config.get("max_batch_size"),
        "dynamic batching": "on" if batching is not None else "off",
        "preferred batch sizes": ", ".join(map(str, batching.get("preferred_batch_size", []))) if batching else "",
        "queue delay µs": int(batching.get("max_queue_delay_microseconds", 0)) if batching else None,
        "instances": sum(int(g.get("count", 1)) for g in groups),
        "instance kind": ", ".join(sorted({g.get("kind", "") for g in groups})),
        "backend": config.get("backend") or config.get("platform"),
    }


def model_stats(url: str, timeout: float = 5.0) -> tuple[list[dict], list[dict]]:
    """Triton's GET /v2/models/stats as two tables: per model and version (requests, executions, mean batch size,
    mean queue / compute time per request) and per model and batch size (executions of that size)."""
    _, body = _http(url, "/v2/models/stats", timeout=timeout)
    per_model, per_batch = [], []
    for entry in json.loads(body).get("model_stats", []):
        inference = entry.get("inference_stats", {})
        count = int(inference.get("success", {}).get("count", 0))
        executions = int(entry.get("execution_count", 0))

        def mean_ms(key: str, count: int = count, inference: dict = inference) -> float:
            return round(int(inference.get(key, {}).get("ns", 0)) / max(count, 1) / 1e6, 3)

        per_model.append(
            {
                "model": entry["name"],
                "version": entry.get("version", ""),
                "requests": count,
                "executions": executions,
                "inferences": int(entry.get("inference_count", 0)),
                "mean batch": round(int(entry.get("inference_count", 0)) / max(executions, 1), 2),
                "queue ms/request": mean_ms("queue"),
                "compute ms/request": mean_ms("compute_infer"),
                "failed": int(inference.get("fail", {}).get("count", 0)),
            }
        )
        for batch in entry.get("batch_stats", []):
            per_batch.append(
                {
                    "model": entry["name"],
                    "batch size": int(batch["batch_size"]),
                    "executions": int(batch.get("compute_infer", {}).get("count", 0)),
                }
            )
    return per_model, per_batch


_METRIC_LINE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str, prefix: str = "nv_") -> list[dict]:
    """Prometheus text exposition → rows {metric, model, version, value} for the metrics starting with `prefix`."""
    rows = []
    for line in text.splitlines():
        match = _METRIC_LINE.match(line.strip())
        if not match or not match["name"].startswith(prefix):
            continue
        labels = dict(_LABEL.findall(match["labels"] or ""))
        try:
            value = float(match["value"])
        except ValueError:
            continue
        rows.append(
            {
                "metric": match["name"],
                "model": labels.get("model", ""),
                "version": labels.get("version", ""),
                "value": value,
            }
        )
    return rows


def metrics(metrics_url: str, timeout: float = 5.0) -> list[dict]:
    """Triton's Prometheus metrics (the metrics port's /metrics) as rows; nv_* metrics only."""
    url = metrics_url if metrics_url.rstrip("/").endswith("/metrics") else metrics_url.rstrip("/") + "/metrics"
    request = urllib.request.Request(base_url(url))
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return parse_metrics(response.read().decode("utf-8", "replace"))
