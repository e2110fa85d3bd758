"""Run a local Triton Inference Server: start, wait until ready, detach, stop, inspect.

The server is the real `tritonserver` 2.51 binary that ships inside the PyPI wheel `nvidia-pytriton==0.7.0`, run
straight from the server's own virtualenv (`Settings.triton_env`, built by `make triton-env`). That wheel is the only
Triton that runs on our CPU machines (FACTS.md). It bundles the python backend but no onnxruntime/pytorch/tensorrt
backend, so our CPU models are python-backend `model.py` files that call ONNX Runtime.

Running the binary outside PyTriton has four traps; this module applies the fixes every time it starts a server:

1. **The python backend cannot find its stub.** `libtriton_python.so` looks for `triton_python_backend_stub` next
   to itself in `backends/python/`, but the wheel ships the stubs per Python version under
   `python_backend_stubs/<X.Y>/`. Without a copy every model fails with "triton_python_backend_stub is not found".
   We copy the stub matching the server env's Python version (PyTriton does the same in its workspace).
2. **The stub loads the wrong libpython.** It links `libpython3.X.so` by name; the dynamic loader finds Debian's
   system libpython (3.11.2) while the stdlib comes from pyenv's 3.11.7, and the stub dies with
   `'_thread.RLock' object has no attribute '_recursion_count'`. We put that Python's `LIBDIR` first on
   `LD_LIBRARY_PATH`.
3. **The stub picks its Python by PATH.** It ignores the caller's interpreter and takes the first `python3` on
   PATH to find its site-packages, so the server env's `bin/` must come first on PATH (and we drop PYTHONPATH /
   PYTHONHOME so the app's packages cannot leak in).
4. **numpy 2 in the stub's environment gives empty outputs** (`cannot reshape array of size 0`). That is why the
   server has its own environment with numpy<2 while the app uses numpy 2; we refuse to start on a numpy-2 server
   env instead of serving empty tensors.

Processes: every server we start writes `<run_dir>/triton-<http_port>.pid` (JSON: pid, ports, repository, log path,
start time) and logs stdout+stderr to `<run_dir>/triton-<http_port>.log`. The pid file lets another process (`facecast
stop`, `facecast status`) find it, lets a port clash be blamed on "our own server", and makes a stale file (server
gone) easy to spot. The server runs in its own session, so Ctrl-C in a terminal reaches us, not it: we stop it
ourselves (SIGTERM, then SIGKILL on its process group after a grace period so no python stubs are left behind).

Everything here is stdlib only (urllib for HTTP): the runtime never imports torch, and the app's environment does
not need tritonclient just to check health.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TextIO

from facecast.config import Settings

DEFAULT_START_TIMEOUT_S = 120.0
# Triton waits this long for in-flight requests (and open client connections) before exiting on SIGTERM.
EXIT_TIMEOUT_S = 5
# After SIGTERM we allow the exit timeout plus this much before SIGKILL.
STOP_GRACE_EXTRA_S = 5.0

MAKE_TRITON_ENV_HINT = (
    "run `make triton-env` (it creates the server's own virtualenv: "
    "python3.11 -m venv .venv-triton && .venv-triton/bin/pip install nvidia-pytriton==0.7.0 onnxruntime 'numpy<2')"
)


# --------------------------------------------------------------------------------------------------- errors


class TritonServerError(RuntimeError):
    """Base of everything this module raises on purpose. `summary` is one line, fit for a CLI error message."""

    @property
    def summary(self) -> str:
        return str(self).splitlines()[0] if str(self) else type(self).__name__


class TritonEnvironmentMissing(TritonServerError):
    """The server's virtualenv is missing or unusable (no tritonserver, no stub for its Python, numpy 2, ...)."""


class PortInUse(TritonServerError):
    """A port the server needs is already taken on the host it would bind."""

    def __init__(self, message: str, *, port: int, owner_pid: int | None = None):
        super().__init__(message)
        self.port = port
        self.owner_pid = owner_pid


class TritonStartError(TritonServerError):
    """The server exited, or a model failed to load, before it became ready.

    The message holds the server's own error lines (`failed to load 'X' version 1: ...`, the UNAVAILABLE rows of
    its model table, `failed to start ... service`) and the full path of its log.
    """

    def __init__(self, headline: str, *, log_path: Path, server_lines: list[str], returncode: int | None = None):
        self.headline = headline
        self.log_path = Path(log_path)
        self.server_lines = list(server_lines)
        self.returncode = returncode
        body = "\n".join(f"  {line}" for line in self.server_lines)
        super().__init__(f"{headline}\nserver log: {self.log_path}" + (f"\n{body}" if body else ""))

    @property
    def summary(self) -> str:
        return f"{self.headline} (server log: {self.log_path})"


class TritonStartTimeout(TritonStartError, TimeoutError):
    """The server was still not ready after the timeout (it has been stopped)."""


class ModelRepositoryMissing(TritonServerError):
    """The model repository directory does not exist (nothing was started)."""


class ServerNotRunning(TritonServerError):
    """`stop` found no server of ours on that port."""


# --------------------------------------------------------------------------------- the server's environment


@dataclass(frozen=True)
class TritonEnvironment:
    """Paths inside the server's virtualenv, and the environment variables its processes need (traps 2 and 3)."""

    root: Path
    python: Path
    python_version: str  # "3.11": selects the python backend stub (trap 1)
    python_libdir: Path  # where this Python's libpython3.X.so lives (trap 2)
    tritonserver: Path
    backends_dir: Path
    numpy_version: str | None

    @property
    def bin_dir(self) -> Path:
        return self.root / "bin"

    @property
    def python_backend_stub(self) -> Path:
        return self.backends_dir / "python" / "triton_python_backend_stub"

    def process_environment(self, base: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        # Trap 3: the stub runs the first python3 on PATH; it must be the server env's.
        env["PATH"] = os.pathsep.join([str(self.bin_dir), env.get("PATH", "")]).rstrip(os.pathsep)
        env["VIRTUAL_ENV"] = str(self.root)
        # The app's PYTHONPATH (numpy 2, ...) must never reach the stub's interpreter (trap 4).
        env.pop("PYTHONPATH", None)
        env.pop("PYTHONHOME", None)
        # Trap 2: the stub must load the libpython that matches the server env's stdlib.
        env["LD_LIBRARY_PATH"] = os.pathsep.join([str(self.python_libdir), env.get("LD_LIBRARY_PATH", "")]).rstrip(
            os.pathsep
        )
        return env


_PROBE_SCRIPT = r"""
import json, sys, sysconfig
try:
    from importlib.metadata import version
    numpy_version = version("numpy")
except Exception:
    numpy_version = None
print(json.dumps({
    "version": "%d.%d" % sys.version_info[:2],
    "libdir": sysconfig.get_config_var("LIBDIR"),
    "purelib": sysconfig.get_paths()["purelib"],
    "numpy": numpy_version,
}))
"""


@lru_cache(maxsize=8)
def _probe_python(python: Path) -> dict:
    """Ask the server env's interpreter about itself (its version, LIBDIR and site-packages differ from ours)."""
    try:
        result = subprocess.run(
            [str(python), "-c", _PROBE_SCRIPT], check=False, capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise TritonEnvironmentMissing(f"cannot run the server env's python {python}: {error}; {MAKE_TRITON_ENV_HINT}")
    if result.returncode != 0:
        raise TritonEnvironmentMissing(
            f"the server env's python {python} fails: {result.stderr.strip()[-300:]}; {MAKE_TRITON_ENV_HINT}"
        )
    return json.loads(result.stdout)


def locate_triton_environment(triton_env: Path, *, install_stub: bool = True) -> TritonEnvironment:
    """Find tritonserver, its backends and the right Python inside `triton_env`; apply trap 1 (copy the stub)."""
    root = Path(triton_env).expanduser()
    python = root / "bin" / "python3"
    if not python.exists():
        raise TritonEnvironmentMissing(
            f"Triton server environment not found at {root} (no bin/python3); {MAKE_TRITON_ENV_HINT}"
        )
    info = _probe_python(python)
    pytriton_dir = Path(info["purelib"]) / "pytriton" / "tritonserver"
    tritonserver = pytriton_dir / "bin" / "tritonserver"
    if not tritonserver.exists():
        raise TritonEnvironmentMissing(
            f"{root} has no tritonserver binary ({tritonserver} is missing: nvidia-pytriton==0.7.0 is not installed "
            f"there); {MAKE_TRITON_ENV_HINT}"
        )
    numpy_version = info.get("numpy")
    if numpy_version and int(numpy_version.split(".")[0]) >= 2:
        raise TritonEnvironmentMissing(
            f"the server env {root} has numpy {numpy_version}: the python backend then returns empty outputs "
            f"(FACTS.md trap 4); it needs numpy<2; {MAKE_TRITON_ENV_HINT}"
        )
    env = TritonEnvironment(
        root=root,
        python=python,
        python_version=info["version"],
        python_libdir=Path(info["libdir"]),
        tritonserver=tritonserver,
        backends_dir=pytriton_dir / "backends",
        numpy_version=numpy_version,
    )
    if install_stub:
        _install_python_backend_stub(env, pytriton_dir / "python_backend_stubs")
    return env


def _install_python_backend_stub(env: TritonEnvironment, stubs_dir: Path) -> None:
    """Trap 1: put the stub for the env's Python version where libtriton_python.so looks for it."""
    target = env.python_backend_stub
    if target.exists():
        return
    source = stubs_dir / env.python_version / "triton_python_backend_stub"
    if not source.exists():
        available = sorted(p.name for p in stubs_dir.iterdir()) if stubs_dir.is_dir() else []
        raise TritonEnvironmentMissing(
            f"no python backend stub for Python {env.python_version} in {stubs_dir} (available: {available}); "
            f"{MAKE_TRITON_ENV_HINT}"
        )
    # Copy under a temporary name and rename, so a concurrent start never sees half a binary.
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        partial.write_bytes(source.read_bytes())
        partial.chmod(0o755)
        os.replace(partial, target)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise TritonEnvironmentMissing(f"cannot install the python backend stub into {target}: {error}") from error


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
                f"(pid {owner.pid}, pid file {owner.pid_path}); stop it with `facecast stop --http-port {owner.http_port}` "
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


def _process_alive(pid: int) -> bool:
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
        return _process_alive(self.pid) and _is_tritonserver(self.pid)

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
            if not _process_alive(self.pid):
                return True
            time.sleep(0.05)
        return not _process_alive(self.pid)

    def stop(self, grace_s: float = EXIT_TIMEOUT_S + STOP_GRACE_EXTRA_S) -> StopResult:
        """SIGTERM, wait up to `grace_s`, then SIGKILL the whole process group; remove the pid file."""
        began = time.monotonic()
        if not self.is_running():
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
        "--model-control-mode=none",
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
        stale.pid_path.unlink(missing_ok=True)

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
                raise _start_error_from_log(process, process.returncode())
            if is_ready(process.url, timeout=1.0):
                process.log_position = follower.position
                return process
            if time.monotonic() > deadline:
                process.stop()
                error = _start_error_from_log(process, None)
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
            raise _start_error_from_log(record, None)
        if time.monotonic() > deadline:
            raise TritonStartTimeout(
                f"facecast's own tritonserver (pid {record.pid}) at {record.http_url} was not ready after {timeout:g} s",
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


def read_pid_file(settings: Settings) -> TritonProcess | None:
    """The record of our server on settings.http_port, if a pid file exists (it may be stale: see is_running)."""
    return TritonProcess.from_pid_file(pid_file_path(settings))


def stop_server(settings: Settings, *, grace_s: float = EXIT_TIMEOUT_S + STOP_GRACE_EXTRA_S) -> StopResult:
    """Stop the server whose pid file is `<run_dir>/triton-<http_port>.pid`. A stale pid file is removed and
    reported (was_running=False). No pid file → ServerNotRunning."""
    record = read_pid_file(settings)
    if record is None:
        url = f"{settings.host}:{settings.http_port}"
        someone = " (a server does answer at that address, but facecast did not start it)" if is_live(url) else ""
        raise ServerNotRunning(
            f"no facecast tritonserver on HTTP port {settings.http_port}: no pid file {pid_file_path(settings)}{someone}"
        )
    return record.stop(grace_s=grace_s)


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
    if _in_main_thread():
        previous_handler = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
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
                f"# facecast: tritonserver already running at {process.http_url} (pid {process.pid}); not starting another"
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


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


# ------------------------------------------------------------------------------------------------------ logs


class LogFollower:
    """Reads complete lines appended to a log file since the last call (like `tail -f`, without a thread)."""

    def __init__(self, path: Path, *, start_at: int = 0):
        self.path = Path(path)
        self._offset = start_at
        self._partial = b""

    @property
    def position(self) -> int:
        """Bytes consumed as complete lines: a new follower started here misses and repeats nothing."""
        return self._offset - len(self._partial)

    def new_lines(self, *, final: bool = False) -> list[str]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        self._offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        # The last piece has no newline yet: keep it for the next call, unless the writer is gone (final).
        self._partial = lines.pop()
        if final and self._partial:
            lines.append(self._partial)
            self._partial = b""
        return [line.decode("utf-8", "replace").rstrip("\r") for line in lines]


# A Triton log line: "E1122 13:02:32.278877 3824 model_lifecycle.cc:642] "failed to load 'x' version 1: ...""
_FAILED_LOAD = re.compile(r"failed to load '(?P<model>[^']+)' version (?P<version>\d+): (?P<reason>.*?)\"?$")
_SERVER_ERROR_MARKERS = ("failed to load '", "failed to start", "error: ", "Address already in use", "UNAVAILABLE")
# Errors every CPU-only start prints; they are not why a start failed.
_HARMLESS = ("CudaDriverHelper", "CUDA driver", "cuda_memory_manager", "pinned_memory_manager", "dcgm", "NVML")


def _model_table_failures(lines: list[str]) -> list[str]:
    """UNAVAILABLE rows of the "| Model | Version | Status |" table, with their continuation rows
    (a multi-line reason continues in rows whose model cell is empty)."""
    rows: list[str] = []
    in_failed_row = False
    for line in lines:
        if not line.startswith("|"):
            in_failed_row = False
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and "UNAVAILABLE" in cells[2]:
            rows.append(line.rstrip())
            in_failed_row = True
        elif in_failed_row and cells and cells[0] == "":
            rows.append(line.rstrip())
        else:
            in_failed_row = False
    return rows


def extract_server_errors(log_text: str) -> tuple[list[str], list[str]]:
    """(server error lines worth showing, one-line reasons for a headline) from a tritonserver log."""
    lines = log_text.splitlines()
    reasons: list[str] = []
    picked: list[str] = []
    for line in lines:
        if line.startswith(("|", "+", "#")) or any(h in line for h in _HARMLESS):
            continue
        match = _FAILED_LOAD.search(line)
        if match:
            reason = match.group("reason").split("\\n")[0].strip()
            reasons.append(f"model '{match.group('model')}' version {match.group('version')} failed to load: {reason}")
            picked.append(line)
        elif any(marker in line for marker in _SERVER_ERROR_MARKERS):
            picked.append(line)
            if "failed to start" in line:
                reasons.append(line.split("] ", 1)[-1].strip().strip('"').strip())
    picked.extend(_model_table_failures(lines))
    if not reasons:
        # Nothing we recognise: the last error lines ("E..." or "error: ...") are the best explanation.
        errors = [l for l in lines if (l.startswith(("E", "error"))) and not any(h in l for h in _HARMLESS)]
        if errors:
            reasons.append(errors[-1].split("] ", 1)[-1].strip().strip('"'))
            if errors[-1] not in picked:
                picked.append(errors[-1])
    if not picked:
        picked = [l for l in lines if l.strip() and not l.startswith(("|", "+", "#"))][-15:]
    return picked, reasons


def _start_error_from_log(process: TritonProcess, returncode: int | None) -> TritonStartError:
    try:
        text = process.log_path.read_text(errors="replace")
    except OSError:
        text = ""
    server_lines, reasons = extract_server_errors(text)
    headline = "; ".join(dict.fromkeys(reasons)) or "tritonserver exited before it was ready"
    if returncode is not None:
        headline = f"tritonserver exited (code {returncode}) before it was ready: {headline}"
    return TritonStartError(headline, log_path=process.log_path, server_lines=server_lines, returncode=returncode)


# ---------------------------------------------------------------------------------------------------- HTTP API


def _base_url(url: str) -> str:
    """Accept "host:port" (tritonclient style) or "http://host:port"."""
    url = url.rstrip("/")
    return url if url.startswith(("http://", "https://")) else f"http://{url}"


def _http(url: str, path: str, *, method: str = "GET", body: bytes | None = None, timeout: float = 5.0):
    request = urllib.request.Request(_base_url(url) + path, data=body, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    # A fresh connection per call, closed at once: open keep-alive connections delay Triton's shutdown.
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, response.read()


def _status_ok(url: str, path: str, timeout: float) -> bool:
    try:
        status, _ = _http(url, path, timeout=timeout)
        return status == 200
    except (urllib.error.URLError, OSError, ValueError):
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
            raise TimeoutError(f"Triton at {_base_url(url)} was not ready after {timeout:g} s")
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


def server_status(settings: Settings) -> dict:
    """What `facecast status` reports: reachability, readiness, version, models, and our pid file if any."""
    url = settings.triton_url
    status: dict = {"url": _base_url(url), "live": is_live(url), "ready": False, "models": []}
    if status["live"]:
        status["ready"] = is_ready(url)
        with contextlib.suppress(urllib.error.URLError, OSError, ValueError):
            status["server_version"] = server_metadata(url).get("version")
        with contextlib.suppress(urllib.error.URLError, OSError, ValueError):
            status["models"] = [
                {k: entry[k] for k in ("name", "version", "state", "reason") if k in entry}
                for entry in model_index(url)
            ]
    record = read_pid_file(settings)
    if record is not None:
        status["pid_file"] = str(record.pid_path)
        status["process"] = {**record.to_json(), "running": record.is_running()}
    return status
