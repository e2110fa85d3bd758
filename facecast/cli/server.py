"""`facecast serve`, `stop` and `status`: the local Triton server."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from facecast.cli import options
from facecast.cli.exits import EXIT_NOT_READY, EXIT_OK
from facecast.config import Settings


def serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--detach", action="store_true", help="return once the server is ready; it keeps running (stop: facecast stop)"
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
    from facecast.serving import health, process

    timeout = args.timeout if args.timeout is not None else health.DEFAULT_START_TIMEOUT_S
    if not args.detach:
        return process.serve_foreground(settings, timeout=timeout, reuse=args.reuse)
    server = process.start_server(settings, timeout=timeout, reuse=args.reuse)
    already = "already running, reused" if server.reused else "ready"
    print(f"tritonserver {already} at {server.http_url} (pid {server.pid})")
    print(f"pid file: {server.pid_path}")
    print(f"log: {server.log_path}")
    print(f"stop it with: facecast stop --http-port {server.http_port}")
    return EXIT_OK


def stop_arguments(parser: argparse.ArgumentParser) -> None:
    options.server_ports(parser, identifies_server=True)


def stop(args: argparse.Namespace, settings: Settings) -> int:
    from facecast.serving import process

    result = process.stop_server(settings)
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
    from facecast.serving import process

    report = process.server_status(settings)
    exit_code = EXIT_OK if report["ready"] else EXIT_NOT_READY
    if args.json:
        print(json.dumps(report, indent=2))
        return exit_code

    if not report["live"]:
        print(f"tritonserver at {report['url']}: not reachable")
    else:
        version = report.get("server_version", "?")
        print(f"tritonserver {version} at {report['url']}: {'ready' if report['ready'] else 'live, NOT ready'}")
    record = report.get("process")
    if record:
        state = "running" if record["running"] else "not running (stale pid file)"
        print(f"pid {record['pid']}: {state}; started {record['started_at_iso']}; pid file {report['pid_file']}")
        print(f"log: {record['log_path']}")
        print(f"model repository: {record['model_repository']}")
    if report["live"]:
        print("models:" if report["models"] else "models: none")
        for model in report["models"]:
            reason = f"  {model['reason']}" if model.get("reason") else ""
            print(f"  {model['name']:<24} version {model.get('version', '-'):<4} {model.get('state', '?')}{reason}")
    return exit_code
