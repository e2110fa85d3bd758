"""Who has the DuckDB file open, across processes and threads: every process may write, none holds the file.

DuckDB lets one process at a time open a database file read-write, for as long as it keeps it open. So no facecast
process keeps it open between operations: an operation takes the file, runs, and gives it back (opening, one query
and closing costs 15–25 ms on a 20 MB store here: docs/platform.md).

* Across processes, an exclusive ``flock`` on ``<db>.lock`` orders who opens the file next; a waiting process blocks
  in the kernel and is woken when the holder lets go, so nobody spins on DuckDB's own lock error. A process that is
  not facecast (a DuckDB shell) takes only DuckDB's lock: that is waited out by retrying with a back-off.
* Within a process, operations that overlap share one open instance (one cursor each: DuckDB runs them side by
  side), so sessions of the app do not queue behind each other. A busy process does not keep the file forever: once
  it has held it for HOLD_S, new operations wait until the running ones finish and the file was given back, and then
  yield briefly so another process's waiting operation gets its turn.
* Waiting is bounded (``Settings.store_wait_s``): past it the caller gets :class:`StoreLocked` naming the holder.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from facecast.store.errors import StoreError, StoreLocked

HOLD_S = 0.2  # how long a process keeps admitting new operations into its open instance while others may wait
YIELD_S = 0.005  # after giving the file back because of HOLD_S: time for another process's waiter to take it
_LOCK_HOLDER_PID = re.compile(r"\(PID (\d+)\)")


@dataclass
class WaitStats:
    """How long operations waited for the file, for the reliability report and the Ops page."""

    waits_ms: list[float] = field(default_factory=list)
    opens: int = 0

    def add(self, seconds: float) -> None:
        self.waits_ms.append(1000 * seconds)
        del self.waits_ms[:-10_000]  # a bounded window of the most recent waits


class FileGate:
    """One per database file per process (``gate_for``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self.stats = WaitStats()
        self._cond = threading.Condition()
        self._users = 0
        self._opening = False
        self._draining = False
        self._opened_at = 0.0
        self._drained_at = 0.0
        self._database: duckdb.DuckDBPyConnection | None = None
        self._lock_fd: int | None = None
        self._read_only = False

    @contextmanager
    def connection(self, *, read_only: bool, wait_s: float) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for one operation; the file is given back when the last overlapping operation ends."""
        began = time.monotonic()
        database = self._enter(read_only, began + wait_s)
        self.stats.add(time.monotonic() - began)
        try:
            cursor = database.cursor()
        except BaseException:
            self._leave()
            raise
        try:
            yield cursor
        finally:
            try:
                cursor.close()
            finally:
                self._leave()

    def _enter(self, read_only: bool, deadline: float) -> duckdb.DuckDBPyConnection:
        with self._cond:
            while True:
                fresh = time.monotonic() - self._opened_at < HOLD_S
                if self._database is not None and not self._draining and (fresh or self._users == 0):
                    if read_only != self._read_only:
                        self._draining = True  # reopened in the other mode once the running operations finish
                    else:
                        self._users += 1
                        return self._database
                elif self._database is not None and not fresh:
                    self._draining = True  # held long enough: let the running operations finish, then give it back
                if self._database is None and not self._opening:
                    self._opening = True
                    break
                if not self._cond.wait(timeout=max(0.0, deadline - time.monotonic())):
                    raise StoreLocked(self.path, None, "this process's own operations did not finish in time")
        try:
            database = self._open(read_only, deadline)
        except BaseException:
            with self._cond:
                self._opening = False
                self._cond.notify_all()
            raise
        with self._cond:
            self._database, self._read_only, self._opened_at = database, read_only, time.monotonic()
            self._users, self._opening, self._draining = 1, False, False
            self._cond.notify_all()
            return database

    def _leave(self) -> None:
        with self._cond:
            self._users -= 1
            if self._users > 0:
                return
            if self._draining:
                self._drained_at = time.monotonic()
            database, lock_fd = self._database, self._lock_fd
            self._database, self._lock_fd, self._draining = None, None, False
            try:
                if database is not None:
                    database.close()
            finally:
                if lock_fd is not None:
                    fcntl.flock(lock_fd, fcntl.LOCK_UN)
                    os.close(lock_fd)
                self._cond.notify_all()

    def _open(self, read_only: bool, deadline: float) -> duckdb.DuckDBPyConnection:
        """Take the lock file, then the DuckDB file itself, each waited for until the deadline."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        time.sleep(max(0.0, self._drained_at + YIELD_S - time.monotonic()))  # another process's turn first
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _flock_until(fd, self.path, deadline)
            delay = 0.002
            while True:
                try:
                    database = _connect(self.path, read_only)
                    break
                except StoreLocked:
                    if time.monotonic() + delay > deadline:
                        raise
                    time.sleep(delay)
                    delay = min(delay * 2, 0.1)
        except BaseException:
            os.close(fd)  # closing the descriptor drops the flock too
            raise
        self._lock_fd = fd
        self.stats.opens += 1
        return database


def _flock_until(fd: int, path: Path, deadline: float) -> None:
    delay = 0.001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise StoreError(f"cannot lock {path}.lock: {error.strerror}") from error
        if time.monotonic() + delay > deadline:
            raise StoreLocked(path, None, "another facecast process kept the store busy for the whole wait")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _connect(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    """Open the file, turning DuckDB's errors into StoreLocked / StoreError with the file named."""
    try:
        return duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as error:
        detail = str(error)
        if "Could not set lock" in detail or "Conflicting lock" in detail:
            pid = _LOCK_HOLDER_PID.search(detail)
            raise StoreLocked(path, int(pid.group(1)) if pid else None, detail) from error
        raise StoreError(unreadable_message(path, detail)) from error
    except duckdb.ConnectionException as error:
        raise StoreError(f"facecast store {path} cannot be opened in this process: {error}") from error
    except duckdb.Error as error:
        raise StoreError(unreadable_message(path, str(error))) from error


def unreadable_message(path: Path, detail: str) -> str:
    if path.is_dir():
        return f"cannot open facecast store {path}: it is a folder; FACECAST_DB (or --db) names the DuckDB file itself"
    return (
        f"cannot open facecast store {path}: it is corrupt, truncated or not a DuckDB database file (or cannot be "
        f"read). The file was not modified; move it aside to start a fresh store. DuckDB said: {detail}"
    )


_GATES: dict[Path, FileGate] = {}
_GATES_GUARD = threading.Lock()


def gate_for(path: Path) -> FileGate:
    with _GATES_GUARD:
        return _GATES.setdefault(path, FileGate(path))
