"""Several local tritonservers over one model repository, known as one deployment by the HTTP port of the first.

`facecast serve --replicas N` starts replica i on the base ports + 10·i (8000/8001/8002, 8010/8011/8012, ...), all
at once so their model loading overlaps, and records the set in ``<run_dir>/triton-<base http port>.replicas.json``.
Every command that talks to Triton then finds the deployment's endpoints with :func:`configured_urls`:
``FACECAST_TRITON_URLS`` when set (a remote deployment or a balancer), else the recorded replicas of the base port,
else the single server at host:http_port. `facecast stop` stops the whole set; `facecast status` reports each member.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
import urllib.error
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TextIO

from facecast.config import Settings
from facecast.serving.errors import ServerNotRunning, TritonServerError
from facecast.serving.health import DEFAULT_START_TIMEOUT_S, base_url, is_live, is_ready, model_index, server_metadata
from facecast.serving.process import (
    StopResult,
    TritonProcess,
    in_main_thread,
    raise_keyboard_interrupt,
    read_pid_file,
    start_server,
)

PORT_STEP = 10  # replica i listens on the base HTTP, gRPC and metrics ports + PORT_STEP·i
MAX_REPLICAS = 9  # with PORT_STEP 10, the ports of a 10th replica would run into the next hundred


def replica_settings(settings: Settings, index: int) -> Settings:
    step = PORT_STEP * index
    return settings.with_overrides(
        http_port=settings.http_port + step,
        grpc_port=settings.grpc_port + step,
        metrics_port=settings.metrics_port + step,
    )


def replica_set_path(settings: Settings) -> Path:
    return Path(settings.run_dir) / f"triton-{settings.http_port}.replicas.json"


def read_replica_set(settings: Settings) -> list[Settings] | None:
    """The members of the deployment recorded for settings.http_port, or None when there is none (or it is torn)."""
    try:
        record = json.loads(replica_set_path(settings).read_text())
        return [replica_settings(settings, index) for index in range(int(record["replicas"]))]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def configured_urls(settings: Settings) -> list[str]:
    """The endpoints every client of this deployment spreads its requests over (module docstring)."""
    if settings.triton_urls:
        return list(settings.triton_urls)
    members = read_replica_set(settings)
    return [member.triton_url for member in members] if members else [settings.triton_url]


def start_replicas(
    settings: Settings,
    count: int,
    *,
    model_repository: Path | None = None,
    timeout: float = DEFAULT_START_TIMEOUT_S,
    reuse: bool = False,
) -> list[TritonProcess]:
    """Start `count` replicas and return once every one is ready; if any fails, the others are stopped again and
    the first failure is raised (TritonServerError: ports, environment, a model that does not load)."""
    if not 1 <= count <= MAX_REPLICAS:
        raise TritonServerError(f"--replicas must be 1 to {MAX_REPLICAS}, got {count}")
    members = [replica_settings(settings, index) for index in range(count)]
    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [
            pool.submit(start_server, member, model_repository=model_repository, timeout=timeout, reuse=reuse)
            for member in members
        ]
        started: list[TritonProcess] = []
        failure: BaseException | None = None
        for future in futures:
            try:
                started.append(future.result())
            except BaseException as error:  # noqa: BLE001 - the first failure is re-raised below
                failure = failure or error
    if failure is not None:
        for process in started:
            if not process.reused:
                process.stop()
        raise failure
    _write_replica_set(settings, count)
    return started


def _write_replica_set(settings: Settings, count: int) -> None:
    path = replica_set_path(settings)
    if count == 1:
        path.unlink(missing_ok=True)  # one server needs no record: host:http_port finds it
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps({"base_http_port": settings.http_port, "replicas": count}, indent=2) + "\n")
    os.replace(partial, path)


def stop_replicas(settings: Settings) -> list[StopResult]:
    """Stop every recorded replica of the deployment (or the single server); ServerNotRunning when none is ours."""
    members = read_replica_set(settings) or [settings]
    results = []
    for member in members:
        record = read_pid_file(member)
        if record is not None:
            results.append(record.stop())
    replica_set_path(settings).unlink(missing_ok=True)
    if not results:
        someone = " (a server does answer there, but facecast did not start it)" if is_live(settings.triton_url) else ""
        raise ServerNotRunning(
            f"no facecast tritonserver on HTTP port {settings.http_port}: no pid file in {settings.run_dir}{someone}"
        )
    return results


def endpoint_status(url: str, record: TritonProcess | None = None) -> dict[str, Any]:
    """What `facecast status --json` says about one endpoint (gRPC and metrics addresses only where known)."""
    status: dict[str, Any] = {
        "url": base_url(url),
        "grpc_url": f"{record.host}:{record.grpc_port}" if record else None,
        "metrics_url": record.metrics_url if record else None,
        "pid": record.pid if record else None,
        "live": is_live(url),
        "ready": False,
        "models": [],
    }
    if status["live"]:
        status["ready"] = is_ready(url)
        with contextlib.suppress(urllib.error.URLError, OSError, ValueError):
            status["server_version"] = server_metadata(url).get("version")
        with contextlib.suppress(urllib.error.URLError, OSError, ValueError):
            status["models"] = [
                {k: entry[k] for k in ("name", "version", "state", "reason") if k in entry}
                for entry in model_index(url)
            ]
    if record is not None:
        status["running"] = record.is_running()
        status["pid_file"] = str(record.pid_path)
        status["log_path"] = str(record.log_path)
        status["model_repository"] = str(record.model_repository)
        status["started_at_iso"] = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(record.started_at))
    return status


def deployment_status(settings: Settings) -> dict[str, Any]:
    """{"replicas": [endpoint_status, ...], "ready": every replica ready}: the configured endpoints, with the pid
    file of each one facecast started here."""
    if settings.triton_urls:
        replicas = [endpoint_status(url) for url in settings.triton_urls]
    else:
        members = read_replica_set(settings) or [settings]
        replicas = [endpoint_status(member.triton_url, read_pid_file(member)) for member in members]
    return {"replicas": replicas, "ready": bool(replicas) and all(r["ready"] for r in replicas)}


def serve_replicas_foreground(
    settings: Settings,
    count: int,
    *,
    model_repository: Path | None = None,
    timeout: float = DEFAULT_START_TIMEOUT_S,
    out: TextIO | None = None,
) -> int:
    """`facecast serve --replicas N` without --detach: start them, report each, and stop them all on Ctrl-C or
    SIGTERM (a replica that exits meanwhile is reported; the others keep serving). Returns 0 after a stop."""
    out = out or sys.stdout
    previous = signal.signal(signal.SIGTERM, raise_keyboard_interrupt) if in_main_thread() else None
    processes: list[TritonProcess] = []
    try:
        processes = start_replicas(settings, count, model_repository=model_repository, timeout=timeout)
        for process in processes:
            print(
                f"# facecast: tritonserver ready at {process.http_url} (pid {process.pid}, log {process.log_path})",
                file=out,
                flush=True,
            )
        print(f"# facecast: {count} replicas serving; Ctrl-C stops them all", file=out, flush=True)
        gone: set[int] = set()
        while len(gone) < len(processes):
            for process in processes:
                if process.pid not in gone and not process.is_running():
                    gone.add(process.pid)
                    print(
                        f"# facecast: replica {process.http_url} exited (code {process.returncode()}); "
                        f"see {process.log_path}",
                        file=out,
                        flush=True,
                    )
            time.sleep(0.5)
        return 1
    except KeyboardInterrupt:
        print("# facecast: stopping the replicas ...", file=out, flush=True)
        return 0
    finally:
        for process in processes:
            process.stop()
        replica_set_path(settings).unlink(missing_ok=True)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
