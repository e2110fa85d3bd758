"""The `facecast` command line: `python -m facecast <command> ...` or the `facecast` console script.

Each subcommand is two functions, `_<name>_arguments(parser)` and `cmd_<name>(args, settings) -> exit code`,
registered in COMMANDS below; adding one (e.g. `classify`) means writing those two and adding one line there.

Errors the user can act on (server env missing, port in use, a model that fails to load, a timeout) are raised as
facecast.triton_server.TritonServerError and printed as one line on stderr with a non-zero exit code, never as
a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from facecast import __version__
from facecast.config import Settings, load_settings

EXIT_OK = 0
EXIT_ERROR = 1  # a TritonServerError: one line on stderr
EXIT_PARTIAL = 2  # `classify`: some files could not be classified (each says why)
EXIT_NOT_READY = 3  # `status`: no server, or not ready (like `systemctl status` for a stopped unit)
EXIT_INTERRUPTED = 130


# ------------------------------------------------------------------------------------------ shared options


def _add_port_options(parser: argparse.ArgumentParser, *, identifies_by_http_port: bool = False) -> None:
    # stop/status accept all three so the same flags work for every command; the HTTP port names the server.
    note = " (the HTTP port identifies the server)" if identifies_by_http_port else ""
    parser.add_argument("--http-port", type=int, help=f"Triton HTTP port (default: FACECAST_HTTP_PORT or 8000){note}")
    parser.add_argument("--grpc-port", type=int, help="Triton gRPC port (default: FACECAST_GRPC_PORT or 8001)")
    parser.add_argument("--metrics-port", type=int, help="Triton metrics port (default: FACECAST_METRICS_PORT or 8002)")


def _settings_from_args(settings: Settings, args: argparse.Namespace) -> Settings:
    """Flags override environment variables, which override defaults (see facecast.config)."""
    return settings.with_overrides(
        http_port=getattr(args, "http_port", None),
        grpc_port=getattr(args, "grpc_port", None),
        metrics_port=getattr(args, "metrics_port", None),
        model_repository=getattr(args, "model_repository", None),
    )


# --------------------------------------------------------------------------------------------------- serve


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--detach", action="store_true", help="return once the server is ready; it keeps running (stop: facecast stop)"
    )
    _add_port_options(parser)
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


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from facecast import triton_server

    timeout = args.timeout if args.timeout is not None else triton_server.DEFAULT_START_TIMEOUT_S
    if not args.detach:
        return triton_server.serve_foreground(settings, timeout=timeout, reuse=args.reuse)
    process = triton_server.start_server(settings, timeout=timeout, reuse=args.reuse)
    already = "already running, reused" if process.reused else "ready"
    print(f"tritonserver {already} at {process.http_url} (pid {process.pid})")
    print(f"pid file: {process.pid_path}")
    print(f"log: {process.log_path}")
    print(f"stop it with: facecast stop --http-port {process.http_port}")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------------- stop


def _stop_arguments(parser: argparse.ArgumentParser) -> None:
    _add_port_options(parser, identifies_by_http_port=True)


def cmd_stop(args: argparse.Namespace, settings: Settings) -> int:
    from facecast import triton_server

    result = triton_server.stop_server(settings)
    if not result.was_running:
        print(f"tritonserver pid {result.pid} was not running; removed its stale pid file")
    else:
        how = " (it ignored SIGTERM: killed)" if result.killed else ""
        print(f"stopped tritonserver pid {result.pid} in {result.seconds:.1f} s{how}")
    return EXIT_OK


# -------------------------------------------------------------------------------------------------- status


def _status_arguments(parser: argparse.ArgumentParser) -> None:
    _add_port_options(parser, identifies_by_http_port=True)
    parser.add_argument("--json", action="store_true", help="print the status as JSON")


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from facecast import triton_server

    status = triton_server.server_status(settings)
    exit_code = EXIT_OK if status["ready"] else EXIT_NOT_READY
    if args.json:
        print(json.dumps(status, indent=2))
        return exit_code

    if not status["live"]:
        print(f"tritonserver at {status['url']}: not reachable")
    else:
        version = status.get("server_version", "?")
        print(f"tritonserver {version} at {status['url']}: {'ready' if status['ready'] else 'live, NOT ready'}")
    process = status.get("process")
    if process:
        state = "running" if process["running"] else "not running (stale pid file)"
        print(f"pid {process['pid']}: {state}; started {process['started_at_iso']}; pid file {status['pid_file']}")
        print(f"log: {process['log_path']}")
        print(f"model repository: {process['model_repository']}")
    if status["live"]:
        print("models:" if status["models"] else "models: none")
        for model in status["models"]:
            reason = f"  {model['reason']}" if model.get("reason") else ""
            print(f"  {model['name']:<24} version {model.get('version', '-'):<4} {model.get('state', '?')}{reason}")
    return exit_code


# ------------------------------------------------------------------------------------------------ classify

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp"}


def _classify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", type=Path, help="image files, or folders of them")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument("--url", action="append", help="Triton host:port (repeat for failover; default: local server)")
    parser.add_argument("--db", type=Path, help="DuckDB file to record results in (default: FACECAST_DB)")
    parser.add_argument("--no-store", action="store_true", help="do not record the results")
    parser.add_argument("--http-port", type=int, help="port of the local Triton (default: FACECAST_HTTP_PORT or 8000)")


def _expand_images(paths: list[Path]) -> list[Path]:
    expanded = []
    for path in paths:
        if path.is_dir():
            expanded += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        else:
            expanded.append(path)
    return expanded


def cmd_classify(args: argparse.Namespace, settings: Settings) -> int:
    from facecast.expressions import EXPRESSION_MODEL, ClassifiedImage, ExpressionRecognizer, classify_images, read_sources
    from facecast.triton_client import InferenceFailed, ModelUnavailable, TritonModelClient, TritonUnavailable

    paths = _expand_images(args.images)
    if not paths:
        print("facecast classify: error: no image files found in the given folder(s)", file=sys.stderr)
        return EXIT_ERROR
    readable, unreadable = [], []
    for name, data, error in read_sources(paths):
        (readable.append((name, data)) if data is not None else unreadable.append(ClassifiedImage(name, None, None, error)))
    recognizer = ExpressionRecognizer(TritonModelClient(EXPRESSION_MODEL, args.url or [settings.triton_url]))
    try:
        results = classify_images(readable, recognizer) if readable else []
    except (TritonUnavailable, ModelUnavailable, InferenceFailed) as error:
        print(f"facecast classify: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    order = {str(p): i for i, p in enumerate(paths)}
    results = sorted(results + unreadable, key=lambda r: order.get(r.source, 0))

    if not args.no_store:
        _record_classifications(results, args.db or settings.db_path)
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        for result in results:
            if result.prediction is None:
                print(f"{result.source}: error: {result.error}")
                continue
            p = result.prediction
            params = " ".join(f"{k}={v:.2f}" for k, v in p.action_params.items())
            print(f"{result.source}: {p.emotion} ({p.confidence:.0%}), style {p.style} "
                  f"({p.style_probs[p.style]:.0%}), {params}")
    failed = sum(r.prediction is None for r in results)
    return EXIT_OK if failed == 0 else EXIT_PARTIAL


def _record_classifications(results, db_path: Path) -> None:
    from facecast.store import StoreError, open_store

    rows = [r.as_record() for r in results if r.prediction is not None]
    if not rows:
        return
    try:
        with open_store(db_path) as store:
            store.add_classifications(rows)
    except StoreError as error:  # results are still printed; only the record is missing
        print(f"facecast classify: warning: results not recorded: {error}", file=sys.stderr)


# ------------------------------------------------------------------------------------------------ registry


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Settings], int]


# The one place subcommands are registered.
COMMANDS: tuple[Command, ...] = (
    Command("serve", "run the local Triton server (foreground, or --detach)", _serve_arguments, cmd_serve),
    Command("stop", "stop a server started with `facecast serve`", _stop_arguments, cmd_stop),
    Command("status", "is the server ready, and which models does it serve", _status_arguments, cmd_status),
    Command("classify", "emotion, style and action parameters of face images, through Triton", _classify_arguments,
            cmd_classify),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facecast", description="facecast: expression analysis over Triton")
    parser.add_argument("--version", action="version", version=f"facecast {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        sub = subparsers.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(handler=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Imported here, not at the top: `facecast --help` must not pay for anything heavy.
    from facecast.triton_server import TritonServerError

    try:
        settings = _settings_from_args(load_settings(), args)
        return args.handler(args, settings)
    except TritonServerError as error:
        print(f"facecast {args.command}: error: {error.summary}", file=sys.stderr)
        return EXIT_ERROR
    except ValueError as error:  # e.g. a malformed FACECAST_* variable
        print(f"facecast {args.command}: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"facecast {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `facecast classify --json ... | head`: the reader left, nothing to report
        sys.stderr.close()
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
