"""What the store raises on purpose; messages name the file and say what to do."""

from __future__ import annotations

from pathlib import Path


class StoreError(Exception):
    """The store cannot be opened or used as asked (corrupt file, newer schema, failed migration, closed store...)."""


class StoreLocked(StoreError):
    """The DuckDB file stayed busy for the whole wait: another program keeps it open (facecast processes share it,
    each for a moment: facecast.store.gate)."""

    def __init__(self, path: Path, pid: int | None, detail: str) -> None:
        holder = f"process {pid}" if pid is not None else "another process"
        super().__init__(
            f"facecast store {path} is locked by {holder}, which kept it for longer than facecast waits "
            f"(FACECAST_STORE_WAIT_S). facecast's own processes take turns on the file; a program that keeps it open "
            f"(a DuckDB shell, a stuck process) must close it. Or point FACECAST_DB at another file. "
            f"DuckDB said: {detail}"
        )
        self.path = path
        self.pid = pid
