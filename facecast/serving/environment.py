"""The server's own Python environment (`Settings.triton_env`, built by `make triton-env`) and the fixes for the four
traps of running PyTriton's `tritonserver` binary outside PyTriton (the package docstring of facecast.serving lists
them: stub location, libpython, PATH, numpy 2)."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from facecast.serving.errors import TritonEnvironmentMissing

MAKE_TRITON_ENV_HINT = (
    "run `make triton-env` (it creates the server's own virtualenv: "
    "python3.11 -m venv .venv-triton && .venv-triton/bin/pip install nvidia-pytriton==0.7.0 onnxruntime 'numpy<2')"
)


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
        raise TritonEnvironmentMissing(
            f"cannot run the server env's python {python}: {error}; {MAKE_TRITON_ENV_HINT}"
        ) from error
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
            f"(docs/platform.md, trap 4); it needs numpy<2; {MAKE_TRITON_ENV_HINT}"
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
