"""Options several commands share, declared once: where Triton is, which store, JSON output, server ports."""

from __future__ import annotations

import argparse
from pathlib import Path

from facecast.config import Settings


def triton(parser: argparse.ArgumentParser) -> None:
    """--url (repeatable) and --http-port: which Triton endpoints a command's requests go to."""
    parser.add_argument(
        "--url",
        action="append",
        metavar="HOST:PORT",
        help="Triton HTTP endpoint (repeat for replicas; default: FACECAST_TRITON_URLS, or the local replicas)",
    )
    parser.add_argument(
        "--http-port", type=int, help="HTTP port of the local Triton (the first replica's; default 8000)"
    )


def store(parser: argparse.ArgumentParser, *, what: str = "DuckDB file") -> None:
    parser.add_argument("--db", type=Path, help=f"{what} (default: FACECAST_DB)")


def json_output(parser: argparse.ArgumentParser, what: str = "one JSON document on stdout") -> None:
    parser.add_argument("--json", action="store_true", help=what)


def server_ports(parser: argparse.ArgumentParser, *, identifies_server: bool = False) -> None:
    # stop/status accept all three so the same flags work for every server command; the HTTP port names the server.
    note = " (the HTTP port identifies the server)" if identifies_server else ""
    parser.add_argument("--http-port", type=int, help=f"Triton HTTP port (default: FACECAST_HTTP_PORT or 8000){note}")
    parser.add_argument("--grpc-port", type=int, help="Triton gRPC port (default: FACECAST_GRPC_PORT or 8001)")
    parser.add_argument("--metrics-port", type=int, help="Triton metrics port (default: FACECAST_METRICS_PORT or 8002)")


def settings_from_args(settings: Settings, args: argparse.Namespace) -> Settings:
    """Flags override environment variables, which override defaults (see facecast.config)."""
    return settings.with_overrides(
        http_port=getattr(args, "http_port", None),
        grpc_port=getattr(args, "grpc_port", None),
        metrics_port=getattr(args, "metrics_port", None),
        model_repository=getattr(args, "model_repository", None),
        db_path=getattr(args, "db", None),
    )


def triton_urls(args: argparse.Namespace, settings: Settings) -> list[str]:
    """The endpoints a command spreads its requests over: --url flags, else the deployment's (FACECAST_TRITON_URLS,
    or the replicas `facecast serve --replicas` started, or the single local server)."""
    from facecast.serving.replicas import configured_urls

    return list(args.url) if getattr(args, "url", None) else configured_urls(settings)
