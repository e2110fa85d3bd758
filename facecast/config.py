"""Where facecast keeps things and how it reaches Triton.

Every setting has a default that works from a checkout and can be overridden by an environment variable
(FACECAST_<NAME>), so the app, the CLI, tests and CI agree without a config file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

PACKAGE_ROOT = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_ROOT.parent


class ConfigError(ValueError):
    """A FACECAST_* setting that cannot be used; the message names the variable and its value."""


def _path(name: str, default: Path) -> Path:
    value = os.environ.get(f"FACECAST_{name}")
    return Path(value).expanduser().resolve() if value else default


def _int(name: str, default: int) -> int:
    value = os.environ.get(f"FACECAST_{name}")
    if not value:
        return default
    try:
        return int(value)
    except ValueError as error:
        raise ConfigError(f"FACECAST_{name}={value!r} is not an integer") from error


def _float(name: str, default: float) -> float:
    value = os.environ.get(f"FACECAST_{name}")
    if not value:
        return default
    try:
        return float(value)
    except ValueError as error:
        raise ConfigError(f"FACECAST_{name}={value!r} is not a number") from error


def _urls(name: str) -> tuple[str, ...]:
    """FACECAST_<name>=host:port,host:port → ("host:port", ...); an http:// prefix is accepted and dropped."""
    value = os.environ.get(f"FACECAST_{name}", "")
    urls = []
    for part in value.split(","):
        url = part.strip().rstrip("/").removeprefix("http://").removeprefix("https://")
        if not url:
            continue
        host, _, port = url.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"FACECAST_{name}={value!r}: {part.strip()!r} is not host:port")
        urls.append(url)
    return tuple(urls)


@dataclass(frozen=True)
class Settings:
    root: Path = PROJECT_ROOT
    # Triton model repository the local server loads (built by `make models` / `make repository`).
    model_repository: Path = field(default_factory=lambda: _path("MODEL_REPOSITORY", PROJECT_ROOT / "model_repository"))
    # The server's own Python environment (nvidia-pytriton + onnxruntime, numpy<2): see docs/platform.md, trap 4.
    triton_env: Path = field(default_factory=lambda: _path("TRITON_ENV", PROJECT_ROOT / ".venv-triton"))
    # DuckDB file: the source of truth for everything facecast stores.
    db_path: Path = field(default_factory=lambda: _path("DB", PROJECT_ROOT / "var" / "facecast.duckdb"))
    # How long an operation waits for the store file while other processes use it, before saying who holds it.
    store_wait_s: float = field(default_factory=lambda: _float("STORE_WAIT_S", 30.0))
    # Demo content the first `make run` prepares (faces to try in the app).
    demo_dir: Path = field(default_factory=lambda: _path("DEMO_DIR", PROJECT_ROOT / "var" / "demo"))
    # Pid files and server logs of detached servers.
    run_dir: Path = field(default_factory=lambda: _path("RUN_DIR", PROJECT_ROOT / "var" / "run"))
    host: str = field(default_factory=lambda: os.environ.get("FACECAST_HOST", "127.0.0.1"))
    http_port: int = field(default_factory=lambda: _int("HTTP_PORT", 8000))
    grpc_port: int = field(default_factory=lambda: _int("GRPC_PORT", 8001))
    metrics_port: int = field(default_factory=lambda: _int("METRICS_PORT", 8002))
    # Every Triton endpoint of a deployment (replicas, or a balancer in front of them): FACECAST_TRITON_URLS=
    # host:port,host:port. Empty: the local replicas `facecast serve --replicas` recorded, else host:http_port.
    triton_urls: tuple[str, ...] = field(default_factory=lambda: _urls("TRITON_URLS"))
    # How long one inference call keeps trying (other replicas, a restarting server) before saying Triton is
    # unavailable: 60 s covers a replica's restart (~6 s here, docs/operations.md) with room for a slow host.
    triton_deadline_s: float = field(default_factory=lambda: _float("TRITON_DEADLINE_S", 60.0))

    @property
    def triton_url(self) -> str:
        """host:port of Triton's HTTP endpoint, as tritonclient.http expects it."""
        return f"{self.host}:{self.http_port}"

    def with_overrides(self, **changes: Any) -> Settings:  # noqa: ANN401  # any field of Settings, by name
        """A copy with some fields replaced (None values are ignored), e.g. from CLI flags."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def load_settings() -> Settings:
    return Settings()
