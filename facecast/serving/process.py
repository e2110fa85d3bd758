"""Start, watch and stop local tritonserver processes.

Processes: every server we start writes `<run_dir>/triton-<http_port>.pid` (JSON: pid, ports, repository, log path,
start time) and logs stdout+stderr to `<run_dir>/triton-<http_port>.log`. The pid file lets another process (`facecast
stop`, `facecast status`) find it, lets a port clash be blamed on "our own server", and makes a stale file (server
gone) easy to spot. The server runs in its own session, so Ctrl-C in a terminal reaches us, not it: we stop it
ourselves (SIGTERM, then SIGKILL on its process group after a grace period so no python stubs are left behind).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn, TextIO

from facecast.config import Settings
from facecast.serving.environment import TritonEnvironment, locate_triton_environment
from facecast.serving.errors import (
    ModelRepositoryMissing,
    PortInUse,
    TritonStartTimeout,
)
from facecast.serving.health import (
    DEFAULT_START_TIMEOUT_S,
    is_ready,
)
from facecast.serving.logs import LogFollower, start_error_from_log

# Triton waits this long for in-flight requests (and open client connections) before exiting on SIGTERM.
EXIT_TIMEOUT_S = 5
# After SIGTERM we allow the exit timeout plus this much before SIGKILL.
STOP_GRACE_EXTRA_S = 5.0


# ----------------------------------------------------------------------------------------------------- ports


def port_is_free(host: str, port: int) -> bool:
    """True if nothing listens on host:port. SO_REUSEADDR so that sockets in TIME_WAIT (a server we just
    stopped) do not count as 'in use'; a listening socket still makes bind fail."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def find_free_ports(count: int = 3, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports the OS considers free right now (for tests and benchmarks beside a dev server)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _check_ports_free(settings: Settings) -> None:
    wanted = {"HTTP": settings.http_port, "gRPC": settings.grpc_port, "metrics": settings.metrics_port}
    if len(set(wanted.values())) != len(wanted):
        raise PortInUse(f"HTTP, gRPC and metrics ports must differ, got {wanted}", port=settings.http_port)
    for role, port in wanted.items():
        if port_is_free(settings.host, port):
            continue
        owner = _our_server_using_port(settings.run_dir, port)
        if owner is not None:
            raise PortInUse(
                f"{role} port {port} on {settings.host} is in use by facecast's own tritonserver "
                f"(pid {owner.pid}, pid file {owner.pid_path}); stop it with "
                f"`facecast stop --http-port {owner.http_port}` "
                f"or choose other ports",
                port=port,
                owner_pid=owner.pid,
            )
        raise PortInUse(
            f"{role} port {port} on {settings.host} is already in use by another process; "
            f"choose another with --{role.lower()}-port or stop that process",
            port=port,
        )


def _our_server_using_port(run_dir: Path, port: int) -> TritonProcess | None:
    for pid_path in sorted(Path(run_dir).glob("triton-*.pid")):
        record = TritonProcess.from_pid_file(pid_path)
        if record and port in (record.http_port, record.grpc_port, record.metrics_port) and record.is_running():
            return record
    return None


# ------------------------------------------------------------------------------------------------ processes


def pid_file_path(settings: Settings) -> Path:
    return Path(settings.run_dir) / f"triton-{settings.http_port}.pid"


def default_log_path(settings: Settings) -> Path:
    return Path(settings.run_dir) / f"triton-{settings.http_port}.log"


def backend_stubs(group: int) -> list[int]:
    """The python-backend stubs in process group `group` (a server's pid: it leads its own session).

    Why: when tritonserver dies without stopping them (SIGKILL, the OOM killer, a crash), its stubs can be left
    running, reparented to init, each holding its model's memory and shared-memory region until killed (two were
    found 13 minutes after a run of the test suite, whose fault tests SIGKILL servers). Matched by program name, so
    a later, unrelated process that happens to get the group's number is never touched. Linux /proc; [] elsewhere."""
    stubs = []
    for entry in Path("/proc").glob("[0-9]*"):
        if process_group(int(entry.name)) != group:
            continue
        try:
            program = (entry / "cmdline").read_bytes().split(b"\0", 1)[0]
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if program.endswith(b"triton_python_backend_stub"):
            stubs.append(int(entry.name))
    return stubs


def process_group(pid: int) -> int | None:
    """The process group of `pid` from /proc (None when it is gone or unreadable)."""
    try:
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses, so split after the last ")"
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[2])
    except (OSError, ValueError, IndexError):
        return None


def process_alive(pid: int) -> bool:
    """True if `pid` runs and is not a zombie. Reaps it first if it happens to be our own child."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    except ChildProcessError:
        pass  # not our child: that is the usual case (started by another `facecast serve --detach`)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _is_tritonserver(pid: int) -> bool:
    """Guards against a recycled pid: the pid file's process must still be a tritonserver."""
    try:
        return b"tritonserver" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False
    except OSError:
        return True  # no /proc to ask: trust the pid


@dataclass(frozen=True)
class StopResult:
    pid: int
    was_running: bool  # False: the pid file was stale (the process was already gone); it has been removed
    killed: bool = False  # True: it ignored SIGTERM for the grace period and got SIGKILL
    seconds: float = 0.0


@dataclass
class TritonProcess:
    """One tritonserver we started: either in this process (`popen` set) or read back from its pid file."""

    pid: int
    host: str
    http_port: int
    grpc_port: int
    metrics_port: int
    model_repository: Path
    log_path: Path
    pid_path: Path
    started_at: float
    popen: subprocess.Popen | None = field(default=None, repr=False, compare=False)
    # True when start_server(reuse=True) found this server already running instead of starting one.
    reused: bool = field(default=False, compare=False)
    # How far start_server has read the log (bytes, at a line boundary): the foreground mode streams on from here.
    log_position: int = field(default=0, repr=False, compare=False)

    @property
    def url(self) -> str:
        """host:port, as tritonclient.http.InferenceServerClient expects it."""
        return f"{self.host}:{self.http_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    def to_json(self) -> dict:
        return {
            "pid": self.pid,
            "host": self.host,
            "http_port": self.http_port,
            "grpc_port": self.grpc_port,
            "metrics_port": self.metrics_port,
            "model_repository": str(self.model_repository),
            "log_path": str(self.log_path),
            "started_at": self.started_at,
            "started_at_iso": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started_at)),
        }

    def write_pid_file(self) -> None:
        self.pid_path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.pid_path.with_name(self.pid_path.name + ".partial")
        partial.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        os.replace(partial, self.pid_path)

    @classmethod
    def from_pid_file(cls, pid_path: Path) -> TritonProcess | None:
        """The record in `pid_path`, or None if there is no (readable) pid file."""
        try:
            data = json.loads(Path(pid_path).read_text())
            return cls(
                pid=int(data["pid"]),
                host=data["host"],
                http_port=int(data["http_port"]),
                grpc_port=int(data["grpc_port"]),
                metrics_port=int(data["metrics_port"]),
                model_repository=Path(data["model_repository"]),
                log_path=Path(data["log_path"]),
                pid_path=Path(pid_path),
                started_at=float(data["started_at"]),
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return None  # a torn or foreign file: treated like no server

    def is_running(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return process_alive(self.pid) and _is_tritonserver(self.pid)

    def returncode(self) -> int | None:
        return self.popen.poll() if self.popen is not None else None

    def _wait_gone(self, timeout: float) -> bool:
        if self.popen is not None:
            try:
                self.popen.wait(timeout=timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not process_alive(self.pid):
                return True
            time.sleep(0.05)
        return not process_alive(self.pid)

    def stop(self, grace_s: float = EXIT_TIMEOUT_S + STOP_GRACE_EXTRA_S) -> StopResult:
        """SIGTERM, wait up to `grace_s`, then SIGKILL the whole process group; remove the pid file."""
        began = time.monotonic()
        if not self.is_running():
            self._reap_orphaned_stubs()
            self._remove_pid_file()
            return StopResult(self.pid, was_running=False)
        killed = False
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        if not self._wait_gone(grace_s):
            killed = True
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)  # the server leads its own session: this takes the stubs too
            self._wait_gone(5.0)
        self._remove_pid_file()
        return StopResult(self.pid, was_running=True, killed=killed, seconds=time.monotonic() - began)

    def _reap_orphaned_stubs(self) -> None:
        """The stubs a server that died without stopping them left behind (backend_stubs says why)."""
        for stub in backend_stubs(self.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(stub, signal.SIGKILL)

    def _remove_pid_file(self) -> None:
        # Only remove the file if it still describes this process (a new server may have taken the port since).
        current = TritonProcess.from_pid_file(self.pid_path)
        if current is None or current.pid == self.pid:
            self.pid_path.unlink(missing_ok=True)


def build_server_command(env: TritonEnvironment, settings: Settings, model_repository: Path) -> list[str]:
    host = settings.host
    return [
        str(env.tritonserver),
        f"--model-repository={model_repository}",
        f"--backend-directory={env.backends_dir}",
        f"--http-address={host}",
        f"--http-port={settings.http_port}",
        f"--grpc-address={host}",
        f"--grpc-port={settings.grpc_port}",
        # 2.51 has --metrics-address (it defaults to the HTTP address); set it explicitly anyway.
        f"--metrics-address={host}",
        f"--metrics-port={settings.metrics_port}",
        "--allow-gpu-metrics=false",
        f"--exit-timeout-secs={EXIT_TIMEOUT_S}",
        # Ready only when every model is loaded; a model that fails to load makes the server exit (exit-on-error).
        "--strict-readiness=true",
        "--exit-on-error=true",
        # explicit + every model at start: the same start-up as "none", plus the load API, so a studio's calibrated
        # engagement version (facecast.calibration) is loaded beside the served ones without a restart.
        "--model-control-mode=explicit",
        "--load-model=*",
        "--log-verbose=0",
    ]


def spawn_server(
    settings: Settings, *, model_repository: Path | None = None, log_path: Path | None = None
) -> TritonProcess:
    """Start tritonserver in the background and write its pid file; do not wait for it. Most callers want
    `start_server` (which waits until ready) or `running_server`."""
    env = locate_triton_environment(settings.triton_env)
    repository = Path(model_repository or settings.model_repository).expanduser().resolve()
    if not repository.is_dir():
        raise ModelRepositoryMissing(f"model repository {repository} does not exist (build it with `make repository`)")
    _check_ports_free(settings)
    stale = TritonProcess.from_pid_file(pid_file_path(settings))
    if stale is not None and not stale.is_running():
        stale.stop()  # removes its pid file and the stubs it may have left (a restart after a crash)

    log_path = Path(log_path or default_log_path(settings)).expanduser().resolve()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = build_server_command(env, settings, repository)
    with open(log_path, "wb") as log_file:
        log_file.write(("# " + " ".join(command) + "\n").encode())
        log_file.flush()
        popen = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            # Both streams: gRPC and the final "error: creating server" line go to stderr, not to Triton's log.
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env.process_environment(),
            cwd=str(Path(settings.run_dir)),
            # Own session: Ctrl-C in the terminal must reach us (we stop it cleanly), and killpg can take the stubs.
            start_new_session=True,
        )
    process = TritonProcess(
        pid=popen.pid,
        host=settings.host,
        http_port=settings.http_port,
        grpc_port=settings.grpc_port,
        metrics_port=settings.metrics_port,
        model_repository=repository,
        log_path=log_path,
        pid_path=pid_file_path(settings),
        started_at=time.time(),
        popen=popen,
    )
    process.write_pid_file()
    return process


def start_server(
    settings: Settings,
    *,
    model_repository: Path | None = None,
    log_path: Path | None = None,
    timeout: float = DEFAULT_START_TIMEOUT_S,
    on_log_line: Callable[[str], None] | None = None,
    reuse: bool = False,
) -> TritonProcess:
    """Start tritonserver and return once `/v2/health/ready` says every model is loaded.

    Raises TritonEnvironmentMissing, PortInUse, TritonStartError (the server exited or a model failed to load:
    the message carries the server's error lines and the log path) or TritonStartTimeout (it was stopped).
    `on_log_line` receives every log line written while waiting (the foreground mode prints them).
    `reuse=True`: if our own server already runs on these ports with this repository, wait until it is ready and
    return it (`.reused` is True) instead of failing with PortInUse (`make run` twice in a row).
    """
    if reuse:
        existing = _reuse_running_server(settings, model_repository, timeout)
        if existing is not None:
            return existing
    process = spawn_server(settings, model_repository=model_repository, log_path=log_path)
    follower = LogFollower(process.log_path)
    deadline = time.monotonic() + timeout
    try:
        while True:
            for line in follower.new_lines():
                if on_log_line:
                    on_log_line(line)
            if not process.is_running():
                for line in follower.new_lines(final=True):
                    if on_log_line:
                        on_log_line(line)
                process.stop()  # reaps it and removes the pid file
                raise start_error_from_log(process.log_path, process.returncode())
            if is_ready(process.url, timeout=1.0):
                process.log_position = follower.position
                return process
            if time.monotonic() > deadline:
                process.stop()
                error = start_error_from_log(process.log_path, None)
                raise TritonStartTimeout(
                    f"tritonserver at {process.http_url} was not ready after {timeout:g} s (it has been stopped)",
                    log_path=process.log_path,
                    server_lines=error.server_lines,
                )
            time.sleep(0.1)
    except BaseException:
        # Ctrl-C or any error while waiting: never leave a half-started server behind.
        if process.is_running():
            process.stop()
        raise


def _reuse_running_server(settings: Settings, model_repository: Path | None, timeout: float) -> TritonProcess | None:
    record = read_pid_file(settings)
    if record is None or not record.is_running():
        return None
    repository = Path(model_repository or settings.model_repository).expanduser().resolve()
    wanted = (repository, settings.host, settings.grpc_port, settings.metrics_port)
    found = (record.model_repository, record.host, record.grpc_port, record.metrics_port)
    if wanted != found:
        raise PortInUse(
            f"facecast's own tritonserver (pid {record.pid}) already runs on HTTP port {record.http_port} with "
            f"repository {record.model_repository}, gRPC port {record.grpc_port}, metrics port {record.metrics_port}; "
            f"stop it first (`facecast stop --http-port {record.http_port}`) to serve {repository} with these ports",
            port=record.http_port,
            owner_pid=record.pid,
        )
    deadline = time.monotonic() + timeout
    while not is_ready(record.url, timeout=1.0):  # another `serve` may still be starting it
        if not record.is_running():
            raise start_error_from_log(record.log_path, None)
        if time.monotonic() > deadline:
            raise TritonStartTimeout(
                f"facecast's own tritonserver (pid {record.pid}) at {record.http_url} was not ready after "
                f"{timeout:g} s",
                log_path=record.log_path,
                server_lines=[],
            )
        time.sleep(0.1)
    record.reused = True
    return record


@contextlib.contextmanager
def running_server(
    settings: Settings,
    *,
    model_repository: Path | None = None,
    log_path: Path | None = None,
    timeout: float = DEFAULT_START_TIMEOUT_S,
) -> Iterator[TritonProcess]:
    """Start a ready server for the duration of a `with` block (tests, benchmarks), then stop it.

    with running_server(settings.with_overrides(http_port=..., ...), model_repository=repo) as server:
        client = tritonclient.http.InferenceServerClient(server.url)
    """
    process = start_server(settings, model_repository=model_repository, log_path=log_path, timeout=timeout)
    try:
        yield process
    finally:
        process.stop()


@contextlib.contextmanager
def loopback_server(
    model_repository: Path, run_dir: Path, *, timeout: float = DEFAULT_START_TIMEOUT_S, db_path: Path | None = None
) -> Iterator[tuple[Settings, TritonProcess]]:
    """A ready server on free loopback ports serving `model_repository` (tests, benchmarks: several at once never
    collide), its pid file and log under `run_dir`; stopped afterwards. `db_path`: the store its Settings name."""
    http, grpc, metrics = find_free_ports(3)
    settings = Settings().with_overrides(
        http_port=http,
        grpc_port=grpc,
        metrics_port=metrics,
        run_dir=run_dir,
        model_repository=model_repository,
        **({"db_path": db_path} if db_path is not None else {}),
    )
    with running_server(settings, model_repository=model_repository, timeout=timeout) as server:
        yield settings, server


def read_pid_file(settings: Settings) -> TritonProcess | None:
    """The record of our server on settings.http_port, if a pid file exists (it may be stale: see is_running)."""
    return TritonProcess.from_pid_file(pid_file_path(settings))


def serve_foreground(
    settings: Settings,
    *,
    model_repository: Path | None = None,
    log_path: Path | None = None,
    timeout: float = DEFAULT_START_TIMEOUT_S,
    out: TextIO | None = None,
    reuse: bool = False,
) -> int:
    """Run the server attached to the terminal: stream its log to `out`, stop it on Ctrl-C (or SIGTERM).
    Returns the server's exit code (0 after a Ctrl-C)."""
    out = out or sys.stdout

    def echo(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    # Treat SIGTERM (docker stop, systemd, kill) like Ctrl-C so the server is stopped, not orphaned.
    previous_handler = None
    if in_main_thread():
        previous_handler = signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    try:
        process = start_server(
            settings,
            model_repository=model_repository,
            log_path=log_path,
            timeout=timeout,
            on_log_line=echo,
            reuse=reuse,
        )
        if process.reused:
            echo(
                f"# facecast: tritonserver already running at {process.http_url} (pid {process.pid}); "
                "not starting another"
            )
            return 0
        follower = LogFollower(process.log_path, start_at=process.log_position)
        echo(f"# facecast: tritonserver ready at {process.http_url} (pid {process.pid}); Ctrl-C stops it")
        try:
            while process.is_running():
                for line in follower.new_lines():
                    echo(line)
                time.sleep(0.2)
            for line in follower.new_lines(final=True):
                echo(line)
            process.stop()
            return process.returncode() or 0
        except KeyboardInterrupt:
            echo("# facecast: stopping tritonserver ...")
            result = process.stop()
            for line in follower.new_lines(final=True):
                echo(line)
            echo(f"# facecast: stopped in {result.seconds:.1f} s" + (" (SIGKILL)" if result.killed else ""))
            return 0
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)


def in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def raise_keyboard_interrupt(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt
