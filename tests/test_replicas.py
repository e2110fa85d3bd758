"""Local replicas and the client pool, against REAL tritonservers killed and stopped for real (no mocks).

`facecast serve --replicas 3` from the CLI end to end, then the pool on two replicas of a tiny python-backend model:
requests spread over both, a SIGKILLed replica costs no failed request and no second timeout, a SIGSTOPped one is
left behind after one per-try timeout, a restarted one is re-admitted, and with every replica gone the caller gets
one clear TritonUnavailable."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from facecast.config import ConfigError, Settings
from facecast.serving import process, replicas
from facecast.serving.client import TritonModelClient
from facecast.serving.endpoints import EndpointPool
from facecast.serving.errors import TritonUnavailable
from facecast.serving.health import model_stats
from tests.test_triton_server import DOUBLE_MODEL_PY, make_repository, needs_server, process_gone, run_cli

VALUES = np.array([[1.0, 2.5, -3.0]], np.float32)


def free_base_port() -> int:
    """A base HTTP port whose whole replica block (base + 10·i + {0, 1, 2}, three replicas) is free."""
    for _ in range(200):
        base = random.randrange(20_000, 60_000, 100)
        ports = [base + 10 * i + j for i in range(3) for j in range(3)]
        if all(process.port_is_free("127.0.0.1", port) for port in ports):
            return base
    raise RuntimeError("no free block of ports for three replicas")


def base_settings(run_dir: Path, base: int, repository: Path) -> Settings:
    return Settings().with_overrides(
        http_port=base, grpc_port=base + 1, metrics_port=base + 2, run_dir=run_dir, model_repository=repository
    )


def served_requests(url: str) -> int:
    per_model, _ = model_stats(url)
    return sum(row["requests"] for row in per_model)


def test_triton_urls_setting(monkeypatch) -> None:
    monkeypatch.setenv("FACECAST_TRITON_URLS", " 10.0.0.1:8000, http://triton-b:8000/ ,")
    assert Settings().triton_urls == ("10.0.0.1:8000", "triton-b:8000")
    assert replicas.configured_urls(Settings()) == ["10.0.0.1:8000", "triton-b:8000"]
    monkeypatch.setenv("FACECAST_TRITON_URLS", "triton-b")
    with pytest.raises(ConfigError, match="'triton-b' is not host:port"):
        Settings()
    monkeypatch.delenv("FACECAST_TRITON_URLS")
    assert replicas.configured_urls(Settings().with_overrides(http_port=8123)) == ["127.0.0.1:8123"]


@needs_server
def test_serve_three_replicas_status_and_stop(tmp_path) -> None:
    repository = make_repository(tmp_path / "repo", {"double": DOUBLE_MODEL_PY})
    base = free_base_port()
    run_dir = tmp_path / "run"
    flags = [f"--http-port={base}", f"--grpc-port={base + 1}", f"--metrics-port={base + 2}"]
    began = time.monotonic()
    served = run_cli(
        "serve", "--replicas", "3", "--detach", *flags, f"--model-repository={repository}", run_dir=run_dir
    )
    try:
        assert served.returncode == 0, served.stderr
        assert "3 replicas ready" in served.stdout, served.stdout
        assert time.monotonic() - began < 60
        for i in range(3):
            assert f"http://127.0.0.1:{base + 10 * i} " in served.stdout

        status = run_cli("status", "--json", f"--http-port={base}", run_dir=run_dir)
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)
        assert report["ready"] is True and len(report["replicas"]) == 3
        for i, replica in enumerate(report["replicas"]):
            port = base + 10 * i
            assert replica["url"] == f"http://127.0.0.1:{port}" and replica["live"] and replica["ready"]
            assert replica["grpc_url"] == f"127.0.0.1:{port + 1}"
            assert replica["metrics_url"] == f"http://127.0.0.1:{port + 2}/metrics"
            assert isinstance(replica["pid"], int)
            assert [m["name"] for m in replica["models"]] == ["double"]
        # every command of this deployment finds all three
        settings = base_settings(run_dir, base, repository)
        assert replicas.configured_urls(settings) == [f"127.0.0.1:{base + 10 * i}" for i in range(3)]
        pids = [replica["pid"] for replica in report["replicas"]]
    finally:
        stopped = run_cli("stop", f"--http-port={base}", run_dir=run_dir)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.count("stopped tritonserver") == 3
    assert all(process_gone(pid) for pid in pids)
    assert not list(run_dir.glob("*.pid")) and not list(run_dir.glob("*.replicas.json"))


@pytest.fixture
def two_replicas(tmp_path) -> Iterator[tuple[Settings, list[process.TritonProcess]]]:
    repository = make_repository(tmp_path / "repo", {"double": DOUBLE_MODEL_PY})
    settings = base_settings(tmp_path / "run", free_base_port(), repository)
    started = replicas.start_replicas(settings, 2, model_repository=repository, timeout=60)
    try:
        yield settings, started
    finally:
        for server in started:
            os.kill(server.pid, signal.SIGCONT) if server.is_running() else None
        replicas.stop_replicas(settings) if any(s.is_running() for s in started) else None


def double(client: TritonModelClient) -> np.ndarray:
    return client.infer({"INPUT": VALUES})["OUTPUT"]


@needs_server
def test_the_pool_spreads_requests_and_survives_a_killed_replica(two_replicas) -> None:
    settings, (first, second) = two_replicas
    pool = EndpointPool()
    client = TritonModelClient("double", replicas.configured_urls(settings), timeout_s=2.0, pool=pool)
    with ThreadPoolExecutor(4) as workers:
        list(workers.map(lambda _: double(client), range(20)))  # warm-up: each replica's first execution is slow
        before = [served_requests(first.url), served_requests(second.url)]
        assert all(np.array_equal(out, VALUES * 2) for out in workers.map(lambda _: double(client), range(200)))
    counts = [served_requests(first.url) - before[0], served_requests(second.url) - before[1]]
    # within ±40 % of the mean: turns alternate, but a replica slowed by a noisy neighbour is passed over while
    # it has more requests in flight (IMBALANCE), as it should be
    assert sum(counts) == 200 and all(abs(c - 100) <= 40 for c in counts), counts

    os.kill(first.pid, signal.SIGKILL)
    assert first._wait_gone(10)
    timings = []
    for _ in range(20):  # every request succeeds; only the first one pays for finding the dead replica
        began = time.monotonic()
        assert np.array_equal(double(client), VALUES * 2)
        timings.append(time.monotonic() - began)
    state = pool.state(first.url)
    assert state["admitted"] is False and state["ejections"] == 1 and state["failed"] >= 1
    assert "ConnectionRefusedError" in str(state["last_error"]) or "Connection" in str(state["last_error"])
    assert sorted(timings)[-2] < 0.5, timings  # a dead endpoint is remembered, not retried per call

    # restarted on the same ports: re-admitted after its back-off, and it serves again
    restarted = process.start_server(
        replicas.replica_settings(settings, 0), model_repository=first.model_repository, timeout=60
    )
    try:
        deadline = time.monotonic() + 30
        while not pool.state(first.url)["admitted"] and time.monotonic() < deadline:
            double(client)
            time.sleep(0.2)
        assert pool.state(first.url)["admitted"] is True and pool.state(first.url)["readmissions"] == 1
        before = served_requests(first.url)
        for _ in range(20):
            double(client)
        assert served_requests(first.url) > before
    finally:
        restarted.stop()


@needs_server
def test_a_stopped_replica_costs_one_timeout_then_is_left_alone(two_replicas) -> None:
    settings, (first, second) = two_replicas
    pool = EndpointPool()
    client = TritonModelClient("double", [first.url, second.url], timeout_s=1.0, pool=pool)
    double(client)  # reads the model's config while both answer
    os.kill(second.pid, signal.SIGSTOP)
    try:
        timings = []
        for _ in range(12):
            began = time.monotonic()
            assert np.array_equal(double(client), VALUES * 2)
            timings.append(time.monotonic() - began)
        state = pool.state(second.url)
        assert state["admitted"] is False and "timeout" in str(state["last_error"]).lower()
        assert max(timings) < 1.0 + 0.5  # at most one per-try timeout, then the other replica answers
        assert sum(t > 0.5 for t in timings) <= 1, timings
    finally:
        os.kill(second.pid, signal.SIGCONT)


@needs_server
def test_with_every_replica_gone_one_clear_error(two_replicas) -> None:
    settings, started = two_replicas
    pool = EndpointPool()
    client = TritonModelClient("double", [s.url for s in started], timeout_s=1.0, deadline_s=3.0, pool=pool)
    double(client)
    for server in started:
        os.kill(server.pid, signal.SIGKILL)
        assert server._wait_gone(10)
    began = time.monotonic()
    with pytest.raises(TritonUnavailable) as caught:
        double(client)
    # they answered before, so the client waited for a restart, for its deadline and no longer
    assert 3.0 <= time.monotonic() - began < 8.0
    message = str(caught.value)
    assert "\n" not in message and all(server.url in message for server in started)
    assert "did not come back within 3 s" in message and "facecast serve" in message
