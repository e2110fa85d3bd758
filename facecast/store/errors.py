"""What the store raises on purpose; messages name the file and say what to do."""

from __future__ import annotations

from pathlib import Path


class StoreError(Exception):
    """The store cannot be opened or used as asked (corrupt file, newer schema, failed migration, closed store...)."""


class StoreLocked(StoreError):
    """Another process holds the DuckDB file: DuckDB allows one writing process per file."""

    def __init__(self, path: Path, pid: int | None, detail: str) -> None:
        holder = f"process {pid}" if pid is not None else "another process"
        super().__init__(
            f"facecast store {path} is locked by {holder}: DuckDB lets only one process open a database file for "
            f"writing. Stop the other facecast app or command (or point FACECAST_DB at another file) and retry. "
            f"DuckDB said: {detail}"
        )
        self.path = path
        self.pid = pid
