"""Fresh clone → app open: wall time of the README's first command and the disk it takes.

    python -m benchmarks.fresh_clone [--dir /tmp/facecast-fresh] [--app-port 8599] [--triton-port 18700]

Clones this repository's HEAD into an empty folder, runs `make run` there (on ports that do not collide with a
developer's server), waits until the Streamlit app answers and Triton is ready, records the time of each stage and
the folder's size, stops both, and writes the "fresh clone" section of docs/benchmarks.md. pip's download cache of
the machine is used, as on any developer machine that has installed Python packages before.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from benchmarks.report import write_section
from facecast.config import PROJECT_ROOT


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def folder_size_mb(path: Path) -> float:
    out = subprocess.run(["du", "-sm", str(path)], capture_output=True, text=True, check=True).stdout
    return float(out.split()[0])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/facecast-fresh"))
    parser.add_argument("--app-port", type=int, default=8599)
    parser.add_argument("--triton-port", type=int, default=18700)
    parser.add_argument("--timeout", type=float, default=1200)
    args = parser.parse_args(argv)

    shutil.rmtree(args.dir, ignore_errors=True)
    started = time.monotonic()
    subprocess.run(["git", "clone", "-q", str(PROJECT_ROOT), str(args.dir)], check=True)
    cloned = time.monotonic()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACECAST_") and k != "VIRTUAL_ENV"}
    env.update(
        FACECAST_HTTP_PORT=str(args.triton_port),
        FACECAST_GRPC_PORT=str(args.triton_port + 1),
        FACECAST_METRICS_PORT=str(args.triton_port + 2),
    )
    log = (args.dir.parent / f"{args.dir.name}.log").open("w")
    run = subprocess.Popen(
        ["make", "run", f"APP_PORT={args.app_port}"],
        cwd=args.dir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    triton_ready_at = app_ready_at = None
    try:
        while time.monotonic() - started < args.timeout and run.poll() is None:
            now = time.monotonic()
            if triton_ready_at is None and answers(f"http://127.0.0.1:{args.triton_port}/v2/health/ready"):
                triton_ready_at = now
            if app_ready_at is None and answers(f"http://127.0.0.1:{args.app_port}/_stcore/health"):
                app_ready_at = now
            if triton_ready_at and app_ready_at:
                break
            time.sleep(0.5)
        if not (triton_ready_at and app_ready_at):
            raise SystemExit(f"app not open after {time.monotonic() - started:.0f} s; see {log.name}")
    finally:
        os.killpg(run.pid, signal.SIGTERM)
        run.wait(timeout=30)
        subprocess.run(
            [str(args.dir / ".venv" / "bin" / "facecast"), "stop"],
            cwd=args.dir,
            env=env,
            capture_output=True,
            check=False,
        )
    size = {name: folder_size_mb(args.dir / name) for name in (".venv", ".venv-triton", "model_repository")}
    total = folder_size_mb(args.dir)
    section = "\n".join(
        [
            "## Fresh clone → app open",
            "",
            "`python -m benchmarks.fresh_clone`: `git clone` into an empty folder, then the README's first command "
            "(`make run`) until the app answers on its port and Triton is ready. pip's local cache is warm, as on a "
            "machine that has installed Python packages before; a cold cache adds the download time of the wheels.",
            "",
            "| stage | seconds after start |",
            "|---|---|",
            f"| clone done | {cloned - started:.1f} |",
            f"| Triton ready | {triton_ready_at - started:.0f} |",
            f"| app answering | {app_ready_at - started:.0f} |",
            "",
            f"Disk: {total / 1024:.2f} GB in all — `.venv` {size['.venv'] / 1024:.2f} GB, `.venv-triton` "
            f"{size['.venv-triton'] / 1024:.2f} GB, model repository {size['model_repository']:.0f} MB.",
        ]
    )
    print(section)
    print(f"→ {write_section('fresh-clone', section)}")


if __name__ == "__main__":
    main()
