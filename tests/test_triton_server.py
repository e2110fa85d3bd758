"""facecast.serving.process and the serve/stop/status CLI, against the REAL tritonserver from nvidia-pytriton.

No mocks: each test builds a tiny python-backend model repository in tmp_path and starts the bundled tritonserver
2.51 on free random ports (never 8000-8002, so a developer's own server can keep running). The CLI is run as
`python -m facecast` in a subprocess, exactly as a user runs it (exit codes, stderr, no traceback).
Needs the server env (`make triton-env`); without it the server tests are skipped, unless
FACECAST_REQUIRE_TRITON=1 (CI) turns the skip into a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from facecast.config import PROJECT_ROOT, Settings
from facecast.serving import environment, errors, health, process, replicas

DOUBLE_MODEL_PY = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT").as_numpy()
            doubled = pb_utils.Tensor("OUTPUT", (x * 2).astype(np.float32))
            responses.append(pb_utils.InferenceResponse(output_tensors=[doubled]))
        return responses
"""

FAILING_MODEL_PY = """
class TritonPythonModel:
    def initialize(self, args):
        raise RuntimeError("deliberate failure in initialize of the broken test model")

    def execute(self, requests):
        return []
"""


def config_pbtxt(name: str) -> str:
    return textwrap.dedent(
        f"""\
        name: "{name}"
        backend: "python"
        max_batch_size: 8
        input [ {{ name: "INPUT", data_type: TYPE_FP32, dims: [ -1 ] }} ]
        output [ {{ name: "OUTPUT", data_type: TYPE_FP32, dims: [ -1 ] }} ]
        dynamic_batching {{}}
        instance_group [ {{ kind: KIND_CPU, count: 1 }} ]
        """
    )


def make_repository(root: Path, models: dict[str, str]) -> Path:
    """A Triton model repository with one python-backend model per entry (name -> model.py source)."""
    for name, source in models.items():
        (root / name / "1").mkdir(parents=True)
        (root / name / "config.pbtxt").write_text(config_pbtxt(name))
        (root / name / "1" / "model.py").write_text(textwrap.dedent(source))
    return root


def _server_env_problem() -> str | None:
    try:
        environment.locate_triton_environment(Settings().triton_env)
    except errors.TritonEnvironmentMissing as error:
        return str(error)
    return None


_PROBLEM = _server_env_problem()
_skip_without_server = pytest.mark.skipif(
    _PROBLEM is not None and os.environ.get("FACECAST_REQUIRE_TRITON") != "1",
    reason=f"no Triton server environment: {_PROBLEM}",
)


def needs_server(test):
    """Starts a real tritonserver: marked `triton` (pyproject markers), skipped without the server env."""
    return pytest.mark.triton(_skip_without_server(test))


@pytest.fixture
def ports() -> dict[str, int]:
    http, grpc, metrics = process.find_free_ports(3)
    return {"http_port": http, "grpc_port": grpc, "metrics_port": metrics}


@pytest.fixture
def settings(tmp_path, ports) -> Settings:
    return Settings().with_overrides(run_dir=tmp_path / "run", **ports)


def port_flags(ports: dict[str, int]) -> list[str]:
    return [
        f"--http-port={ports['http_port']}",
        f"--grpc-port={ports['grpc_port']}",
        f"--metrics-port={ports['metrics_port']}",
    ]


def run_cli(*args: str, run_dir: Path, timeout: float = 90, **env_overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "FACECAST_RUN_DIR": str(run_dir), **env_overrides}
    return subprocess.run(
        [sys.executable, "-m", "facecast", *args],
        check=False,
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def process_gone(pid: int) -> bool:
    """No such process, or only a zombie waiting for its (re)parent to reap it: it holds no ports nor memory."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def server_record(pid: int, tmp_path: Path, run_dir: Path, ports: dict[str, int]) -> process.TritonProcess:
    """The record (pid file contents) of a server `pid` on `ports`, for processes that are not a real server."""
    settings = Settings().with_overrides(run_dir=run_dir, **ports)
    return process.TritonProcess(
        pid=pid,
        host="127.0.0.1",
        model_repository=tmp_path,
        log_path=tmp_path / "x.log",
        pid_path=process.pid_file_path(settings),
        started_at=0.0,
        **ports,
    )


def assert_one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@needs_server
def test_serve_detach_infer_status_stop(tmp_path, settings, ports):
    import tritonclient.http as httpclient

    repository = make_repository(tmp_path / "repo", {"double": DOUBLE_MODEL_PY})
    run_dir = settings.run_dir
    served = run_cli("serve", "--detach", *port_flags(ports), f"--model-repository={repository}", run_dir=run_dir)
    try:
        assert served.returncode == 0, served.stderr
        pid_path = run_dir / f"triton-{ports['http_port']}.pid"
        assert str(pid_path) in served.stdout
        assert f"http://127.0.0.1:{ports['http_port']}" in served.stdout
        record = json.loads(pid_path.read_text())
        assert record["http_port"] == ports["http_port"] and record["grpc_port"] == ports["grpc_port"]
        assert record["model_repository"] == str(repository)
        assert Path(record["log_path"]).exists()
        assert health.is_ready(settings.triton_url)

        client = httpclient.InferenceServerClient(settings.triton_url)
        try:
            values = np.array([[1.0, 2.5, -3.0]], dtype=np.float32)
            infer_input = httpclient.InferInput("INPUT", list(values.shape), "FP32")
            infer_input.set_data_from_numpy(values)
            result = client.infer("double", [infer_input], outputs=[httpclient.InferRequestedOutput("OUTPUT")])
            np.testing.assert_array_equal(result.as_numpy("OUTPUT"), values * 2)
        finally:
            client.close()  # open connections delay the server's shutdown by --exit-timeout-secs

        status = run_cli("status", "--json", f"--http-port={ports['http_port']}", run_dir=run_dir)
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)
        [replica] = report["replicas"]
        assert report["ready"] is True and replica["ready"] is True and replica["server_version"] == "2.51.0"
        assert replica["url"] == f"http://127.0.0.1:{ports['http_port']}"
        assert replica["grpc_url"] == f"127.0.0.1:{ports['grpc_port']}"
        assert replica["metrics_url"] == f"http://127.0.0.1:{ports['metrics_port']}/metrics"
        assert {"name": "double", "version": "1", "state": "READY"} in replica["models"]
        assert replica["pid"] == record["pid"] and replica["running"] is True

        # `serve --reuse` (what `make run` calls) accepts our running server instead of starting a second one.
        reused = run_cli(
            "serve", "--detach", "--reuse", *port_flags(ports), f"--model-repository={repository}", run_dir=run_dir
        )
        assert reused.returncode == 0, reused.stderr
        assert "already running" in reused.stdout and f"pid {record['pid']}" in reused.stdout

        # A second server on the same ports is refused, and the error says the port is our own server's.
        again = run_cli("serve", "--detach", *port_flags(ports), f"--model-repository={repository}", run_dir=run_dir)
        message = assert_one_line_error(again)
        assert str(ports["http_port"]) in message and "facecast's own tritonserver" in message
        assert f"pid {record['pid']}" in message

        stopped = run_cli("stop", f"--http-port={ports['http_port']}", run_dir=run_dir)
        assert stopped.returncode == 0, stopped.stderr
        assert "stopped tritonserver" in stopped.stdout
        assert not pid_path.exists()
        for port in ports.values():
            assert process.port_is_free("127.0.0.1", port)
        assert process_gone(record["pid"])

        after = run_cli("status", f"--http-port={ports['http_port']}", run_dir=run_dir)
        assert after.returncode != 0 and "not reachable" in after.stdout
    finally:
        if process.read_pid_file(settings):
            replicas.stop_replicas(settings)


@needs_server
def test_running_server_context_manager(tmp_path, settings):
    repository = make_repository(tmp_path / "repo", {"double": DOUBLE_MODEL_PY})
    with process.running_server(settings, model_repository=repository, timeout=60) as server:
        assert server.url == settings.triton_url
        assert health.is_ready(server.url)
        health.wait_until_ready(server.url, timeout=1)
        assert health.server_metadata(server.url)["version"] == "2.51.0"
        assert health.ready_models(server.url) == ["double"]
        assert server.pid_path.exists()
        pid = server.pid
    assert not server.pid_path.exists()
    assert not health.is_live(settings.triton_url)
    assert process.port_is_free(settings.host, settings.http_port)
    assert process_gone(pid)


@needs_server
def test_backend_stubs_are_the_servers_model_processes(tmp_path, settings):
    repository = make_repository(tmp_path / "repo", {"double": DOUBLE_MODEL_PY})
    with process.running_server(settings, model_repository=repository, timeout=60) as server:
        stubs = process.backend_stubs(server.pid)
        assert len(stubs) == 1  # one instance of one python-backend model
    assert all(process_gone(stub) for stub in stubs)


def test_stopping_a_dead_server_reaps_the_stubs_it_left_and_nothing_else(tmp_path, ports):
    # What a SIGKILLed tritonserver can leave (seen after a run of the suite): its stubs alive in its process group.
    # Stand-ins: a session leader with a "stub" child and an unrelated child, then the leader killed.
    leader = subprocess.Popen(
        ["bash", "-c", "(exec -a triton_python_backend_stub sleep 60) & (exec sleep 61) & wait"],
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 5
        while len(process.backend_stubs(leader.pid)) != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        (stub,) = process.backend_stubs(leader.pid)
        os.killpg(leader.pid, signal.SIGSTOP)  # hold the group still while its leader dies
        leader.kill()
        leader.wait()
        group = [int(p.name) for p in Path("/proc").glob("[0-9]*") if process.process_group(int(p.name)) == leader.pid]
        others = [pid for pid in group if pid != stub]
        dead = server_record(leader.pid, tmp_path, tmp_path / "run", ports)
        assert not process_gone(stub)
        result = dead.stop()
        assert not result.was_running
        deadline = time.monotonic() + 5
        while not process_gone(stub) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process_gone(stub), "the stub was reaped"
        assert others and all(not process_gone(pid) for pid in others), "a process that is not a stub was left"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(leader.pid, signal.SIGKILL)


@needs_server
def test_port_in_use_is_a_clear_error(tmp_path, ports):
    repository = make_repository(tmp_path / "repo", {"double": DOUBLE_MODEL_PY})
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", ports["grpc_port"]))
        squatter.listen()
        result = run_cli(
            "serve", "--detach", *port_flags(ports), f"--model-repository={repository}", run_dir=tmp_path / "run"
        )
    message = assert_one_line_error(result)
    assert f"port {ports['grpc_port']}" in message and "in use" in message
    assert not (tmp_path / "run" / f"triton-{ports['http_port']}.pid").exists()


@needs_server
def test_model_failing_at_initialize_reports_the_server_error(tmp_path, settings, ports):
    repository = make_repository(tmp_path / "repo", {"broken": FAILING_MODEL_PY})

    with pytest.raises(errors.TritonStartError) as caught:
        process.start_server(settings, model_repository=repository, timeout=60)
    message = str(caught.value)
    assert "failed to load 'broken' version 1" in message  # the server's own log line
    assert "deliberate failure in initialize of the broken test model" in message
    assert "| broken | 1" in message and "UNAVAILABLE" in message  # the server's model table row
    assert str(settings.run_dir / f"triton-{ports['http_port']}.log") in message
    assert not process.pid_file_path(settings).exists()
    assert process.port_is_free(settings.host, settings.http_port)

    # The CLI prints the same reason as one line.
    result = run_cli(
        "serve", "--detach", *port_flags(ports), f"--model-repository={repository}", run_dir=settings.run_dir
    )
    line = assert_one_line_error(result)
    assert "model 'broken' version 1 failed to load" in line
    assert "deliberate failure in initialize of the broken test model" in line
    assert "server log:" in line


def test_missing_server_env_is_a_clear_error(tmp_path, ports):
    nowhere = tmp_path / "no-such-env"
    repository = make_repository(tmp_path / "repo", {"double": DOUBLE_MODEL_PY})
    settings = Settings().with_overrides(triton_env=nowhere, run_dir=tmp_path / "run", **ports)
    with pytest.raises(errors.TritonEnvironmentMissing, match="make triton-env"):
        process.start_server(settings, model_repository=repository)

    result = run_cli(
        "serve",
        "--detach",
        *port_flags(ports),
        f"--model-repository={repository}",
        run_dir=tmp_path / "run",
        FACECAST_TRITON_ENV=str(nowhere),
    )
    line = assert_one_line_error(result)
    assert "make triton-env" in line and str(nowhere) in line


def test_stop_handles_stale_and_missing_pid_files(tmp_path, ports):
    run_dir = tmp_path / "run"
    missing = run_cli("stop", f"--http-port={ports['http_port']}", run_dir=run_dir)
    assert "no facecast tritonserver" in assert_one_line_error(missing)

    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that no longer runs
    stale = server_record(gone.pid, tmp_path, run_dir, ports)
    stale.write_pid_file()
    result = run_cli("stop", f"--http-port={ports['http_port']}", run_dir=run_dir)
    assert result.returncode == 0, result.stderr
    assert "stale pid file" in result.stdout
    assert not stale.pid_path.exists()


def test_a_port_that_echoes_the_request_is_not_ready() -> None:
    """What a health poll reads when the kernel connects it to its own ephemeral port (TCP self-connect) before the
    server it waits for has bound that port: its own request line as the status line. Not ready, not a crash
    (seen once in CI as http.client.BadStatusLine out of replicas.start_replicas)."""
    import threading

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def echo_once() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.sendall(connection.recv(4096))

    echo = threading.Thread(target=echo_once, daemon=True)
    echo.start()
    try:
        assert health.is_ready(f"127.0.0.1:{listener.getsockname()[1]}") is False
    finally:
        echo.join(timeout=5)
        listener.close()
