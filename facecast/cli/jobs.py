"""Calibration jobs: `facecast train engagement` run in the background for the Calibrate page, as its own process
(`--job-dir`), so it outlives a browser tab and never blocks the app; the app reads its progress from files.

A job is a folder under ``var/calibration/`` (beside the store)::

    manifest.csv   the metrics, as uploaded
    clips/         the uploaded clips (by file name)
    job.json       who started it, when, the process id
    progress.json  {stage, fraction, message}, rewritten whole (write + rename) as the job goes
    result.json    written once at the end: {ok, version, activatable, validation, ...} or {ok: false, error}
    log.txt        the process's output

One job runs at a time (two fine-tunes on the same cores would each take twice as long, and the versions they
install would race); a job whose process is gone without a result is reported as stopped.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from facecast.calibration.manifest import safe_file_name
from facecast.config import Settings
from facecast.serving.process import process_alive

STAGES = {
    "clips": "Reading the clips' faces",
    "validate": "Cross-validating",
    "train": "Training",
    "install": "Serving",
}


class JobRefused(RuntimeError):
    """A job cannot start (another one runs); the message says which."""


@dataclass
class JobStatus:
    folder: Path
    state: str  # "running", "done", "failed", "stopped"
    started_by: str = ""
    started_at: float = 0.0
    stage: str = ""
    fraction: float = 0.0
    message: str = ""
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.state != "running"


def jobs_folder(settings: Settings) -> Path:
    return Path(settings.db_path).parent / "calibration"


def start_job(
    settings: Settings,
    manifest: bytes,
    uploads: Iterable[tuple[str, BinaryIO]],
    started_by: str,
    urls: list[str],
) -> JobStatus:
    """Save the manifest and clips into a new job folder and start the calibration process."""
    root = jobs_folder(settings)
    root.mkdir(parents=True, exist_ok=True)
    # two people pressing the button at once: the second waits here, then sees the first job running
    with open(root / ".start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        running = [job for job in list_jobs(settings) if job.state == "running"]
        if running:
            raise JobRefused(
                f"a calibration started by {running[0].started_by} is still running ({running[0].folder.name}); "
                "one runs at a time"
            )
        folder = root / f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        (folder / "clips").mkdir(parents=True)
        (folder / "manifest.csv").write_bytes(manifest)
        for name, data in uploads:
            with open(folder / "clips" / safe_file_name(name), "wb") as handle:
                while chunk := data.read(1 << 20):
                    handle.write(chunk)
        command = [
            sys.executable,
            "-m",
            "facecast",
            "train",
            "engagement",
            "--manifest",
            str(folder / "manifest.csv"),
            "--clips-dir",
            str(folder / "clips"),
            "--job-dir",
            str(folder),
            "--install",
            "--by",
            started_by,
            "--db",
            str(settings.db_path),
        ]
        for url in urls:
            command += ["--url", url]
        write_json(folder / "progress.json", {"stage": "clips", "fraction": 0.0, "message": "starting"})
        with open(folder / "log.txt", "wb") as log:
            process = subprocess.Popen(  # noqa: S603 - our own CLI, arguments as a list
                command, stdout=log, stderr=subprocess.STDOUT, cwd=settings.root, start_new_session=True
            )
        write_json(folder / "job.json", {"pid": process.pid, "started_by": started_by, "started_at": time.time()})
        return read_job(folder)


def read_job(folder: Path) -> JobStatus:
    job = _read_json(folder / "job.json")
    progress = _read_json(folder / "progress.json")
    result = _read_json(folder / "result.json")
    status = JobStatus(
        folder,
        "running",
        started_by=str(job.get("started_by", "")),
        started_at=float(job.get("started_at", 0.0)),
        stage=str(progress.get("stage", "")),
        fraction=float(progress.get("fraction", 0.0)),
        message=str(progress.get("message", "")),
        result=result,
    )
    if result:
        status.state = "done" if result.get("ok") else "failed"
    elif not process_alive(int(job.get("pid", 0))):
        status.state = "stopped"
        status.message = "the calibration process ended without a result (see log.txt in " + str(folder) + ")"
    return status


def list_jobs(settings: Settings) -> list[JobStatus]:
    """Every job, newest first (a folder without job.json was never started and is left out)."""
    root = jobs_folder(settings)
    if not root.is_dir():
        return []
    return [read_job(f) for f in sorted(root.iterdir(), reverse=True) if (f / "job.json").is_file()]


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Whole or not at all: a reader never sees half a file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(document))
    temporary.replace(path)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
