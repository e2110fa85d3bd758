"""The DuckDB store: the one place facecast keeps what it has computed (docs/architecture.md, "Storage").

Design
------
* One file, found through ``Settings.db_path`` (``FACECAST_DB``), opened with :func:`open_store`. Everything else
  facecast persists (the FAISS index, caches) is derived from this file and can be rebuilt from it.
* The schema is versioned: literal SQL files under ``migrations/``, applied in order when a store opens
  (facecast.store.migrations says how, and how to add one).
* The tables are reached by domain: ``store.classifications``, ``store.analyses``, ``store.library`` and
  ``store.feedback`` (one small module each); this module holds what they share: opening, transactions, reads.
* Every process may read and write; none holds the file between operations (facecast.store.gate): each operation
  takes the file, runs, and gives it back, waiting its turn when another process has it. Only a wait longer than
  ``Settings.store_wait_s`` (a foreign program holding the file) ends in :class:`StoreLocked`, naming the holder.
  Anything DuckDB cannot open (corrupt, truncated, not a DuckDB file) is a :class:`StoreError`; the file is left
  exactly as it was.
* Writes are transactions: :meth:`Store.transaction` (BEGIN ... COMMIT, ROLLBACK on any exception), serialised
  within a process by a lock per database file, so two Streamlit sessions (threads) never interleave statements
  inside one transaction. Reads run on their own cursors and do not wait for this process's writers.
* Timestamps are naive ``TIMESTAMP`` values in UTC. Vectors are fixed-size ``FLOAT[N]`` arrays and come back as
  ``numpy.float32`` arrays.

duckdb 2.x behaviours this module relies on
-------------------------------------------
* ``execute()`` streams: a result not read to its end blocks ``register()``/``sql()`` on that connection
  ("unfinished result from execute()"), so every result here is drained with ``fetchall()``/``df()``.
* A connection used from two threads at once refuses ("connection is busy with another call") rather than waiting:
  hence the write lock, and a cursor per operation.
* Every statement costs about a millisecond, so rows go in as one Arrow table, not one INSERT each.
* Reading a ``TIMESTAMPTZ`` into Python needs ``pytz`` (not installed): columns are UTC ``TIMESTAMP`` instead.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from facecast.config import load_settings
from facecast.store.analyses import Analyses
from facecast.store.classifications import Classifications
from facecast.store.engagement_models import EngagementModels
from facecast.store.errors import StoreError
from facecast.store.feedback import Feedback
from facecast.store.gate import WaitStats, gate_for
from facecast.store.library import LibraryItems
from facecast.store.migrations import migrate, rollback_quietly

if TYPE_CHECKING:  # pandas only names return types (DuckDB's .df() makes the frames); importing it costs 0.2 s
    import pandas as pd

# One lock per database file for the whole process. DuckDB's instance cache makes every connection to one file in a
# process share one database, so the lock must be per file, not per Store object. RLock: a thread that already holds
# it (a transaction, a migration) may take it again instead of deadlocking on itself.
_WRITE_LOCKS: dict[Path, threading.RLock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


def _write_lock_for(path: Path) -> threading.RLock:
    with _WRITE_LOCKS_GUARD:
        return _WRITE_LOCKS.setdefault(path, threading.RLock())


def open_store(path: str | Path | None = None, *, read_only: bool = False, wait_s: float | None = None) -> Store:
    """Open (creating and migrating if needed) the facecast store at ``path`` (default: ``Settings.db_path``).

    Raises StoreLocked when a program keeps the file for longer than ``wait_s`` (default ``Settings.store_wait_s``)
    and StoreError when it cannot be used (corrupt, newer schema, not a facecast store, a read-only open of a missing
    or outdated file).
    """
    settings = load_settings()
    db_path = Path(path if path is not None else settings.db_path).expanduser().resolve()
    if read_only and not db_path.is_file():
        raise StoreError(f"no facecast store at {db_path} (a read-only open never creates one)")
    store = Store(db_path, read_only=read_only, wait_s=settings.store_wait_s if wait_s is None else wait_s)
    # Under the write lock: two threads opening the same new file at once must not both run migration 1.
    with store._write_lock, store._gate.connection(read_only=read_only, wait_s=store.wait_s) as connection:
        store.schema_version = migrate(connection, db_path, read_only)
    return store


class Transaction:
    """The handle ``Store.transaction()`` yields: runs SQL inside the open transaction, only in its own thread."""

    def __init__(self, connection: duckdb.DuckDBPyConnection) -> None:
        self.connection = connection
        self.thread_id = threading.get_ident()
        self.active = True
        # Set when an inner (joined) transaction block failed: the outer block must not commit a partial result
        # even if its code caught the exception.
        self.rollback_only = False

    def execute(self, sql: str, parameters: Sequence[Any] | Mapping[str, Any] | None = None) -> list[tuple]:
        """Run one statement (or several, without parameters) and return all its rows."""
        self._check_usable()
        return self.connection.execute(sql, parameters).fetchall()

    def insert_arrow(self, table_name: str, rows: pa.Table) -> None:
        """Insert an Arrow table into ``table_name``, matching columns by name (bulk path for vectors)."""
        self._check_usable()
        view_name = f"incoming_{uuid.uuid4().hex}"
        self.connection.register(view_name, rows)
        try:
            columns = ", ".join(rows.column_names)
            self.connection.execute(f"INSERT INTO {table_name} ({columns}) SELECT {columns} FROM {view_name}")
        except duckdb.Error:
            # After a failed INSERT the transaction is aborted and unregister() fails too ("transaction aborted"):
            # that second error must not hide the first (e.g. which constraint the rows violated).
            try:
                self.connection.unregister(view_name)
            except duckdb.Error:
                pass
            raise
        self.connection.unregister(view_name)

    def _check_usable(self) -> None:
        if not self.active:
            raise StoreError("this transaction has ended; open a new one with store.transaction()")
        if threading.get_ident() != self.thread_id:
            raise StoreError("a transaction can only be used by the thread that opened it")


class Store:
    """A facecast store. Create with :func:`open_store`; it holds no file handle between operations, so `close`
    only marks it closed (and a ``with`` block reads well)."""

    def __init__(self, path: Path, *, read_only: bool, wait_s: float, schema_version: int = 0) -> None:
        self.path = path
        self.read_only = read_only
        self.wait_s = wait_s
        self.schema_version = schema_version
        self._gate = gate_for(path)
        self._write_lock = _write_lock_for(path)
        self._transaction: Transaction | None = None
        self._closed = False
        # The tables by domain: store.analyses.add(...), store.library.search_candidates(...), ...
        self.classifications = Classifications(self)
        self.analyses = Analyses(self)
        self.library = LibraryItems(self)
        self.feedback = Feedback(self)
        self.engagement_models = EngagementModels(self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("read-only" if self.read_only else "read-write")
        return f"Store({str(self.path)!r}, {state}, schema_version={self.schema_version})"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Mark the store closed; waits for a running transaction (in another thread) to finish. Idempotent."""
        if self._in_own_transaction():
            raise StoreError("close() called inside a transaction; leave the `with store.transaction()` block first")
        with self._write_lock:
            self._closed = True

    @property
    def wait_stats(self) -> WaitStats:
        """How long this process's operations waited for the file (all Stores of the file share it)."""
        return self._gate.stats

    def change_token(self) -> tuple[int, ...]:
        """Changes whenever any process commits a write (the database file or its write-ahead log changed): what
        an in-process cache of this store compares to notice other processes' writes without opening the file."""
        token: list[int] = []
        for file in (self.path, self.path.with_name(self.path.name + ".wal")):
            try:
                stat = file.stat()
                token += [stat.st_mtime_ns, stat.st_size]
            except FileNotFoundError:
                token += [0, 0]
        return tuple(token)

    # ---- transactions -------------------------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """``with store.transaction() as tx:`` — all or nothing: COMMIT at the end, ROLLBACK on any exception.

        Holds the file's process-wide write lock for the whole block, so other threads' writes wait and never
        interleave with it. Nested blocks in the same thread join the outer transaction (DuckDB has no savepoints):
        if an inner block raises, the whole transaction is rolled back even if the exception is caught.
        """
        if self._in_own_transaction():
            outer = self._transaction
            assert outer is not None
            try:
                yield outer
            except BaseException:
                outer.rollback_only = True
                raise
            return

        if self.read_only:
            raise StoreError(f"facecast store {self.path} is open read-only; writes need open_store(read_only=False)")
        with self._write_lock, self._gate.connection(read_only=False, wait_s=self.wait_s) as connection:
            self._check_open()
            connection.execute("BEGIN TRANSACTION")
            transaction = Transaction(connection)
            self._transaction = transaction
            try:
                yield transaction
                if transaction.rollback_only:
                    raise StoreError("a nested transaction block failed; the whole transaction was rolled back")
            except BaseException:
                self._end_transaction(transaction)
                rollback_quietly(connection)
                raise
            self._end_transaction(transaction)
            try:
                connection.execute("COMMIT")
            except duckdb.Error as error:
                rollback_quietly(connection)  # a failed COMMIT may leave the transaction open
                raise StoreError(f"commit failed on {self.path}; nothing was stored: {error}") from error

    def _end_transaction(self, transaction: Transaction) -> None:
        transaction.active = False
        self._transaction = None

    def _in_own_transaction(self) -> bool:
        # Safe to read without the lock: only the owning thread can have set it to a transaction with its own id.
        transaction = self._transaction
        return transaction is not None and transaction.thread_id == threading.get_ident()

    # ---- reads --------------------------------------------------------------------------------------------------

    @contextmanager
    def _reading(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to read with: the thread's own transaction's (so it sees its uncommitted rows), else a
        cursor of its own for this one read (DuckDB's MVCC gives it a consistent snapshot of committed data)."""
        transaction = self._transaction
        if transaction is not None and transaction.thread_id == threading.get_ident():
            yield transaction.connection
            return
        self._check_open()
        with self._gate.connection(read_only=self.read_only, wait_s=self.wait_s) as connection:
            yield connection

    def read_df(self, sql: str, parameters: Sequence[Any] | None = None) -> pd.DataFrame:
        with self._reading() as connection:
            return connection.execute(sql, parameters).df()

    def read_rows(self, sql: str, parameters: Sequence[Any] | None = None) -> list[tuple]:
        with self._reading() as connection:
            return connection.execute(sql, parameters).fetchall()

    def read_arrow(self, sql: str, parameters: Sequence[Any] | None = None) -> pa.Table:
        # a relation (sql) goes to Arrow without the extra copy a DB-API result (execute) would make
        with self._reading() as connection:
            return connection.sql(sql, params=parameters).to_arrow_table()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"facecast store {self.path} is closed")

    def applied_migrations(self) -> pd.DataFrame:
        """The ``schema_version`` table: version, applied_at, description, oldest first."""
        return self.read_df("SELECT version, applied_at, description FROM schema_version ORDER BY version")
