"""`facecast serve`, `stop` and `status`: the local Triton server."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from facecast.cli import options
from facecast.cli.exits import EXIT_NOT_READY, EXIT_OK
from facecast.config import Settings


def serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--detach", action="store_true", help="return once the server is ready; it keeps running (stop: facecast stop)"
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="start N tritonservers over the same repository, replica i on the base ports + 10·i (default 1)",
    )
    options.server_ports(parser)
    parser.add_argument(
        "--model-repository",
        type=lambda value: Path(value).expanduser().resolve(),
        help="Triton model repository (default: FACECAST_MODEL_REPOSITORY or ./model_repository)",
    )
    parser.add_argument("--timeout", type=float, default=None, help="seconds to wait until ready (default 120)")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="if facecast's own server already runs on these ports with this repository, use it (exit 0)",
    )


def serve(args: argparse.Namespace, settings: Settings) -> int:
    from facecast.serving import health, process, replicas

    timeout = args.timeout if args.timeout is not None else health.DEFAULT_START_TIMEOUT_S
    if not args.detach:
        if args.replicas > 1:
            return replicas.serve_replicas_foreground(settings, args.replicas, timeout=timeout)
        return process.serve_foreground(settings, timeout=timeout, reuse=args.reuse)
    began = time.monotonic()
    servers = replicas.start_replicas(settings, args.replicas, timeout=timeout, reuse=args.reuse)
    for server in servers:
        already = "already running, reused" if server.reused else "ready"
        print(f"tritonserver {already} at {server.http_url} (pid {server.pid})")
        print(f"  gRPC {server.host}:{server.grpc_port}, metrics {server.metrics_url}")
        print(f"  pid file: {server.pid_path}")
        print(f"  log: {server.log_path}")
    if len(servers) > 1:
        print(
            f"{len(servers)} replicas ready in {time.monotonic() - began:.1f} s; the CLI and the app spread requests "
            f"over them ({replicas.replica_set_path(settings)})"
        )
    print(f"stop with: facecast stop --http-port {settings.http_port}")
    return EXIT_OK


def stop_arguments(parser: argparse.ArgumentParser) -> None:
    options.server_ports(parser, identifies_server=True)


def stop(args: argparse.Namespace, settings: Settings) -> int:
    from facecast.serving import replicas

    for result in replicas.stop_replicas(settings):
        if not result.was_running:
            print(f"tritonserver pid {result.pid} was not running; removed its stale pid file")
        else:
            how = " (it ignored SIGTERM: killed)" if result.killed else ""
            print(f"stopped tritonserver pid {result.pid} in {result.seconds:.1f} s{how}")
    return EXIT_OK


def status_arguments(parser: argparse.ArgumentParser) -> None:
    options.server_ports(parser, identifies_server=True)
    options.json_output(parser, "print the status as JSON")


def status(args: argparse.Namespace, settings: Settings) -> int:
    from facecast.serving import replicas

    report = replicas.deployment_status(settings)
    exit_code = EXIT_OK if report["ready"] else EXIT_NOT_READY
    if args.json:
        print(json.dumps(report, indent=2))
        return exit_code
    for replica in report["replicas"]:
        if not replica["live"]:
            print(f"tritonserver at {replica['url']}: not reachable")
        else:
            version = replica.get("server_version", "?")
            state = "ready" if replica["ready"] else "live, NOT ready"
            print(f"tritonserver {version} at {replica['url']}: {state}")
        if replica.get("pid") is not None:
            running = "running" if replica.get("running") else "not running (stale pid file)"
            print(f"  pid {replica['pid']}: {running}; started {replica['started_at_iso']}; log {replica['log_path']}")
            print(f"  model repository: {replica['model_repository']}")
        if replica["live"]:
            print("  models:" if replica["models"] else "  models: none")
            for model in replica["models"]:
                reason = f"  {model['reason']}" if model.get("reason") else ""
                print(
                    f"    {model['name']:<24} version {model.get('version', '-'):<4} {model.get('state', '?')}{reason}"
                )
    return exit_code
