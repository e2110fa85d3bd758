"""The DuckDB store: the one place facecast keeps what it has computed (DESIGN.md, "Storage").

Design
------
* One file, found through ``Settings.db_path`` (``FACECAST_DB``), opened with :func:`open_store`. Everything else
  facecast persists (the FAISS index, caches) is derived from this file and can be rebuilt from it.
* The schema is versioned. ``schema_version`` holds one row per applied migration (version, applied_at, description)
  and :data:`MIGRATIONS` is the ordered list of every migration the code knows. Opening a store applies the pending
  ones in order, each in its own transaction together with its ``schema_version`` row, so a failed migration leaves
  the file at the previous version with nothing half-applied. A file whose version is newer than the code knows is
  refused with :class:`StoreError` and never written to: an older facecast must not "fix" a newer schema.
* One writer, with transactions. All writes go through :meth:`Store.transaction` (BEGIN ... COMMIT, ROLLBACK on any
  exception), serialised by a process-wide lock per database file, so two Streamlit sessions (threads) never
  interleave statements inside one transaction. Reads run on their own short-lived cursors and do not wait for
  writers (see :meth:`Store._reading` for why).
* DuckDB lets one process at a time open a file for writing. A second process gets :class:`StoreLocked`, naming the
  file and the process holding it. Anything DuckDB cannot open (corrupt, truncated, not a DuckDB file) is a
  :class:`StoreError`; the file is left exactly as it was.
* Timestamps are naive ``TIMESTAMP`` values in UTC. Vectors are fixed-size ``FLOAT[N]`` arrays and come back as
  ``numpy.float32`` arrays.

Adding a migration
------------------
Never edit or reorder a migration that has shipped (files in the wild are at those versions); add the next one:

1. Its SQL as a module constant next to ``_MIGRATION_1_IMAGES_CLASSIFIED``::

       _MIGRATION_2_CLIPS = '''
           CREATE SEQUENCE clips_id_seq;
           CREATE TABLE clips (id BIGINT PRIMARY KEY DEFAULT nextval('clips_id_seq'), source_path VARCHAR NOT NULL);
       '''

2. An entry at the end of :data:`MIGRATIONS`: ``Migration(2, "clips: one row per uploaded video", _MIGRATION_2_CLIPS)``.

Versions are 1, 2, 3, ... without gaps. ``apply`` may also be a function ``apply(connection)`` for a step that needs
Python (backfills, reshaping data); it runs inside the migration's transaction, so it must not BEGIN/COMMIT, and it
should read results with ``fetchall()`` (see below). Then add typed methods for the new tables to :class:`Store`:
writes inside ``with self.transaction() as tx``, reads through ``self._read_df`` / ``self._read_rows``.

duckdb 2.x behaviours this module relies on
-------------------------------------------
* ``execute()`` streams: a result not read to its end blocks ``register()``/``sql()`` on that connection
  ("unfinished result from execute()"), so every result here is drained with ``fetchall()``/``df()``.
* A connection used from two threads at once refuses ("connection is busy with another call") rather than waiting:
  hence the write lock, and a cursor per read.
* Every statement costs about a millisecond, so rows go in as one Arrow table, not one INSERT each.
* Reading a ``TIMESTAMPTZ`` into Python needs ``pytz`` (not installed): columns are UTC ``TIMESTAMP`` instead.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from facecast.config import load_settings
from facecast.vocab import ACTION_PARAMS, EMOTIONS, STYLES

__all__ = [
    "EMBEDDING_DIM",
    "MIGRATIONS",
    "ImageClassification",
    "LibraryItem",
    "Migration",
    "Store",
    "StoreError",
    "StoreLocked",
    "StoredAnalysis",
    "Transaction",
    "latest_schema_version",
    "open_store",
]


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


# --------------------------------------------------------------------------------------------------------------------
# Schema and migrations
# --------------------------------------------------------------------------------------------------------------------

# Column defaults use UTC explicitly: a bare current_timestamp::TIMESTAMP follows the session's TimeZone setting.
_UTC_NOW = "(current_timestamp AT TIME ZONE 'UTC')"

_SCHEMA_VERSION_TABLE = f"""
    CREATE TABLE IF NOT EXISTS schema_version (
        version     INTEGER PRIMARY KEY,
        applied_at  TIMESTAMP NOT NULL DEFAULT {_UTC_NOW},
        description VARCHAR NOT NULL
    )
"""

# Array sizes are frozen into the schema: a vocabulary that grows needs a new migration, not an edit here.
_MIGRATION_1_IMAGES_CLASSIFIED = f"""
    CREATE SEQUENCE images_classified_id_seq;
    CREATE TABLE images_classified (
        id             BIGINT PRIMARY KEY DEFAULT nextval('images_classified_id_seq'),
        content_sha256 VARCHAR NOT NULL,
        source_path    VARCHAR NOT NULL,
        model_name     VARCHAR NOT NULL,
        model_version  VARCHAR NOT NULL,
        emotion        VARCHAR NOT NULL,
        emotion_probs  FLOAT[7] NOT NULL,  -- order of facecast.vocab.EMOTIONS
        style          VARCHAR NOT NULL,
        style_probs    FLOAT[4] NOT NULL,  -- order of facecast.vocab.STYLES
        action_params  FLOAT[4] NOT NULL,  -- mouth, eye, brow, cheek (facecast.vocab.ACTION_PARAMS)
        created_at     TIMESTAMP NOT NULL DEFAULT {_UTC_NOW}
    );
    CREATE INDEX images_classified_content_sha256_idx ON images_classified (content_sha256);
"""
assert (len(EMOTIONS), len(STYLES), len(ACTION_PARAMS)) == (7, 4, 4), "vocabulary changed: add a migration"


# Clip analyses (issue 3). `clips` is one row per file content; an analysis is one run of the pipeline over it with
# given settings and models (`fingerprint`), stored whole or not at all: report, tracks and per-face rows in one
# transaction. The report JSON is the document the CLI prints and the app shows; the other tables make it queryable.
_MIGRATION_2_CLIP_ANALYSES = f"""
    CREATE TABLE clips (
        content_sha256 VARCHAR PRIMARY KEY,
        name           VARCHAR NOT NULL,
        size_bytes     BIGINT NOT NULL,
        duration_s     DOUBLE NOT NULL,
        width          INTEGER NOT NULL,
        height         INTEGER NOT NULL,
        fps            DOUBLE NOT NULL,
        codec          VARCHAR NOT NULL,
        first_seen_at  TIMESTAMP NOT NULL DEFAULT {_UTC_NOW}
    );
    CREATE SEQUENCE clip_analyses_id_seq;
    CREATE TABLE clip_analyses (
        id               BIGINT PRIMARY KEY DEFAULT nextval('clip_analyses_id_seq'),
        content_sha256   VARCHAR NOT NULL REFERENCES clips (content_sha256),
        fingerprint      VARCHAR NOT NULL,  -- sampling settings + model versions (facecast.clips.pipeline)
        name             VARCHAR NOT NULL,  -- the file name this analysis was asked for under
        faces_found      BOOLEAN NOT NULL,
        engagement       DOUBLE,            -- NULL when no faces were found
        engagement_low   DOUBLE,
        engagement_high  DOUBLE,
        engagement_class VARCHAR,
        resonance        DOUBLE,
        shareability     DOUBLE,
        report_json      VARCHAR NOT NULL,
        created_at       TIMESTAMP NOT NULL DEFAULT {_UTC_NOW}
    );
    CREATE INDEX clip_analyses_content_idx ON clip_analyses (content_sha256, fingerprint);
    CREATE TABLE clip_tracks (
        analysis_id      BIGINT NOT NULL REFERENCES clip_analyses (id),
        track_id         INTEGER NOT NULL,
        first_s          DOUBLE NOT NULL,
        last_s           DOUBLE NOT NULL,
        observations     INTEGER NOT NULL,
        screen_time_s    DOUBLE NOT NULL,
        dominant_emotion VARCHAR NOT NULL,
        style            VARCHAR NOT NULL,
        PRIMARY KEY (analysis_id, track_id)
    );
    CREATE TABLE clip_faces (
        analysis_id     BIGINT NOT NULL REFERENCES clip_analyses (id),
        track_id        INTEGER NOT NULL,
        t_s             DOUBLE NOT NULL,
        box             FLOAT[4] NOT NULL,  -- x0, y0, x1, y1 in [0, 1] of the upright frame
        detection_score FLOAT NOT NULL,
        emotion         VARCHAR NOT NULL,
        emotion_probs   FLOAT[7] NOT NULL,
        style_probs     FLOAT[4] NOT NULL,
        action_params   FLOAT[4] NOT NULL
    );
    CREATE INDEX clip_faces_analysis_idx ON clip_faces (analysis_id);
"""


# The expression library (issue 4). One row per distinct image content (content_sha256 UNIQUE: ingesting the same
# file twice finds the first row). `emotion_probs` / `style_probs` are the distributions the ranking compares: the
# image_embedder's heads, or the one-hot label when a person labelled the item (`labelled`). `embedding` is the
# image_embedder's L2-normalised vector; the FAISS index beside the file is derived from this column and rebuilt
# from it. Feedback rows keep the φ values the item was shown with, so the weights can be re-learned later.
EMBEDDING_DIM = 512
N_RANKING_TERMS = 5  # facecast.ranking.TERMS
_MIGRATION_3_LIBRARY = f"""
    CREATE SEQUENCE library_items_id_seq;
    CREATE TABLE library_items (
        id             BIGINT PRIMARY KEY DEFAULT nextval('library_items_id_seq'),
        content_sha256 VARCHAR NOT NULL UNIQUE,
        source         VARCHAR NOT NULL,  -- folder, manifest, analysis, synthetic, ...
        source_path    VARCHAR NOT NULL,  -- file path, or clip name + time for expressions taken from analyses
        style          VARCHAR NOT NULL,
        emotion        VARCHAR NOT NULL,
        character      VARCHAR,           -- NULL: unknown
        intensity      FLOAT,             -- emotion intensity in [0, 1]; NULL: unknown
        params         FLOAT[4],          -- action parameters (ACTION_PARAMS order); NULL: unknown
        emotion_probs  FLOAT[7] NOT NULL,
        style_probs    FLOAT[4] NOT NULL,
        labelled       BOOLEAN NOT NULL,  -- emotion/style come from a person's labels, not the model's heads
        embedding      FLOAT[{EMBEDDING_DIM}] NOT NULL,
        thumbnail      BLOB NOT NULL,     -- PNG of the 64 px face the embedder saw
        created_at     TIMESTAMP NOT NULL DEFAULT {_UTC_NOW},
        updated_at     TIMESTAMP NOT NULL DEFAULT {_UTC_NOW}
    );
    CREATE SEQUENCE library_feedback_id_seq;
    CREATE TABLE library_feedback (
        id         BIGINT PRIMARY KEY DEFAULT nextval('library_feedback_id_seq'),
        profile    VARCHAR NOT NULL,   -- a user name, or 'team:<name>'
        query_id   VARCHAR NOT NULL,   -- one shown result list (pairs are formed within it)
        item_id    BIGINT NOT NULL,    -- no REFERENCES: feedback outlives a deleted item
        kind       VARCHAR NOT NULL,   -- 'selected', 'skipped' or 'rating'
        rating     FLOAT,              -- 1..5 for 'rating'
        rank       INTEGER,            -- position it was shown at (1 = first)
        phi        FLOAT[{N_RANKING_TERMS}] NOT NULL,  -- φ values it was shown with (facecast.ranking.TERMS order)
        created_at TIMESTAMP NOT NULL DEFAULT {_UTC_NOW}
    );
    CREATE INDEX library_feedback_profile_idx ON library_feedback (profile);
    CREATE TABLE ranking_weights (
        profile    VARCHAR PRIMARY KEY,
        weights    FLOAT[{N_RANKING_TERMS}] NOT NULL,
        pairs      INTEGER NOT NULL,   -- (selected, skipped) pairs they were learned from
        updated_at TIMESTAMP NOT NULL DEFAULT {_UTC_NOW}
    );
"""


@dataclass(frozen=True)
class Migration:
    """One forward step of the schema. ``apply`` is SQL or a function of the connection, run inside a transaction."""

    version: int
    description: str
    apply: str | Callable[[duckdb.DuckDBPyConnection], None]


MIGRATIONS: list[Migration] = [
    Migration(1, "images_classified: one row per classified image", _MIGRATION_1_IMAGES_CLASSIFIED),
    Migration(2, "clips, clip_analyses, clip_tracks, clip_faces: engagement analyses of video clips",
              _MIGRATION_2_CLIP_ANALYSES),
    Migration(3, "library_items, library_feedback, ranking_weights: the expression library and its feedback",
              _MIGRATION_3_LIBRARY),
]


def latest_schema_version() -> int:
    """The schema version this code writes: the version of the last known migration."""
    return MIGRATIONS[-1].version if MIGRATIONS else 0


def _check_migration_list(migrations: Sequence[Migration]) -> None:
    versions = [migration.version for migration in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise StoreError(f"facecast.store.MIGRATIONS must be numbered 1, 2, 3, ... without gaps; got {versions}")


# --------------------------------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------------------------------


def _float32_vector(value: Any, length: int, name: str) -> np.ndarray:
    vector = np.asarray(value, dtype=np.float32).reshape(-1)
    if vector.shape != (length,):
        raise ValueError(f"{name} must have {length} values, got {vector.size}")
    if not np.all(np.isfinite(vector)):
        raise ValueError(f"{name} must be finite, got {vector.tolist()}")
    return vector


# eq=False: the generated __eq__ would compare arrays with ==, which is ambiguous for numpy arrays.
@dataclass(frozen=True, eq=False)
class ImageClassification:
    """One classified image: a row of ``images_classified``. ``id``/``created_at`` are set by the store."""

    content_sha256: str
    source_path: str
    model_name: str
    model_version: str
    emotion: str
    emotion_probs: np.ndarray  # float32 (7,), order of EMOTIONS
    style: str
    style_probs: np.ndarray  # float32 (4,), order of STYLES
    action_params: np.ndarray  # float32 (4,), order of ACTION_PARAMS
    id: int | None = field(default=None, compare=False)
    created_at: datetime | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        # Validate here, before any transaction starts, so a bad row fails with a clear message and stores nothing.
        if self.emotion not in EMOTIONS:
            raise ValueError(f"emotion {self.emotion!r} is not one of {EMOTIONS}")
        if self.style not in STYLES:
            raise ValueError(f"style {self.style!r} is not one of {STYLES}")
        for name in ("content_sha256", "source_path", "model_name", "model_version"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a string, got {getattr(self, name)!r}")
        # frozen dataclass: object.__setattr__ is the sanctioned way to normalise fields in __post_init__.
        object.__setattr__(self, "emotion_probs", _float32_vector(self.emotion_probs, len(EMOTIONS), "emotion_probs"))
        object.__setattr__(self, "style_probs", _float32_vector(self.style_probs, len(STYLES), "style_probs"))
        object.__setattr__(
            self, "action_params", _float32_vector(self.action_params, len(ACTION_PARAMS), "action_params")
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ImageClassification):
            return NotImplemented
        return all(
            np.array_equal(getattr(self, f.name), getattr(other, f.name))
            if isinstance(getattr(self, f.name), np.ndarray)
            else getattr(self, f.name) == getattr(other, f.name)
            for f in fields(self)
            if f.compare
        )

    __hash__ = None  # type: ignore[assignment]  # holds arrays: not hashable


_CLASSIFICATION_COLUMNS = (
    "id",
    "content_sha256",
    "source_path",
    "model_name",
    "model_version",
    "emotion",
    "emotion_probs",
    "style",
    "style_probs",
    "action_params",
    "created_at",
)


def _as_classification(row: ImageClassification | Mapping[str, Any]) -> ImageClassification:
    return row if isinstance(row, ImageClassification) else ImageClassification(**row)


@dataclass(frozen=True, eq=False)
class LibraryItem:
    """One expression of the library: a row of ``library_items`` (``id``/timestamps are set by the store)."""

    content_sha256: str
    source: str
    source_path: str
    emotion: str
    style: str
    emotion_probs: np.ndarray  # float32 (7,)
    style_probs: np.ndarray  # float32 (4,)
    embedding: np.ndarray  # float32 (EMBEDDING_DIM,), L2-normalised
    thumbnail: bytes  # PNG
    labelled: bool = False
    character: str | None = None
    intensity: float | None = None
    params: np.ndarray | None = None  # float32 (4,) or None when unknown

    def __post_init__(self) -> None:
        if self.emotion not in EMOTIONS:
            raise ValueError(f"emotion {self.emotion!r} is not one of {EMOTIONS}")
        if self.style not in STYLES:
            raise ValueError(f"style {self.style!r} is not one of {STYLES}")
        if not isinstance(self.thumbnail, (bytes, bytearray)) or not self.thumbnail:
            raise ValueError("thumbnail must be non-empty PNG bytes")
        object.__setattr__(self, "emotion_probs", _float32_vector(self.emotion_probs, len(EMOTIONS), "emotion_probs"))
        object.__setattr__(self, "style_probs", _float32_vector(self.style_probs, len(STYLES), "style_probs"))
        object.__setattr__(self, "embedding", _float32_vector(self.embedding, EMBEDDING_DIM, "embedding"))
        if self.params is not None:
            object.__setattr__(self, "params", _float32_vector(self.params, len(ACTION_PARAMS), "params"))
        if self.intensity is not None and not 0.0 <= float(self.intensity) <= 1.0:
            raise ValueError(f"intensity must be in [0, 1], got {self.intensity}")

    __hash__ = None  # type: ignore[assignment]


# Library columns the ranking needs for candidates (no embedding, no thumbnail: those are read only when needed).
_LIBRARY_RANKING_COLUMNS = ("id", "emotion", "style", "character", "intensity", "source", "source_path", "labelled")
_NAN_PARAMS = "['NaN', 'NaN', 'NaN', 'NaN']::FLOAT[4]"


def _library_filter_sql(emotion: str | None, style: str | None, character: str | None) -> tuple[str, list[Any]]:
    """AND-ed predicates for the library filters, always with parameters (never values pasted into SQL)."""
    clauses, parameters = [], []
    for column, value in (("emotion", emotion), ("style", style), ("character", character)):
        if value is not None:
            clauses.append(f"{column} = ?")
            parameters.append(value)
    return "".join(f" AND {clause}" for clause in clauses), parameters


def _arrow_matrix(column: pa.ChunkedArray, width: int) -> np.ndarray:
    flat = column.combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return np.asarray(flat, dtype=np.float32).reshape(-1, width)


# --------------------------------------------------------------------------------------------------------------------
# Opening
# --------------------------------------------------------------------------------------------------------------------

# One lock per database file for the whole process. DuckDB's instance cache makes every connection to one file in a
# process share one database, so the lock must be per file, not per Store object. RLock: a thread that already holds
# it (a transaction, a migration) may take it again instead of deadlocking on itself.
_WRITE_LOCKS: dict[Path, threading.RLock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


def _write_lock_for(path: Path) -> threading.RLock:
    with _WRITE_LOCKS_GUARD:
        return _WRITE_LOCKS.setdefault(path, threading.RLock())


_LOCK_HOLDER_PID = re.compile(r"\(PID (\d+)\)")


def _connect(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    """Open the file, turning DuckDB's errors into StoreLocked / StoreError with the file named."""
    try:
        return duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as error:
        detail = str(error)
        if "Could not set lock" in detail or "Conflicting lock" in detail:
            pid = _LOCK_HOLDER_PID.search(detail)
            raise StoreLocked(path, int(pid.group(1)) if pid else None, detail) from error
        raise StoreError(_unreadable_message(path, detail)) from error
    except duckdb.ConnectionException as error:
        # DuckDB shares one database per file within a process; it must be opened with one configuration.
        raise StoreError(
            f"facecast store {path} is already open in this process with a different mode (read-only vs "
            f"read-write); use the Store that is already open. DuckDB said: {error}"
        ) from error
    except duckdb.Error as error:
        raise StoreError(_unreadable_message(path, str(error))) from error


def _unreadable_message(path: Path, detail: str) -> str:
    return (
        f"cannot open facecast store {path}: it is corrupt, truncated or not a DuckDB database file (or cannot be "
        f"read). The file was not modified; move it aside to start a fresh store. DuckDB said: {detail}"
    )


def _scalar(connection: duckdb.DuckDBPyConnection, sql: str, parameters: Sequence[Any] | None = None) -> Any:
    # fetchall, not fetchone: in duckdb 2.x a result that was not read to its end blocks sql()/register() on the
    # connection ("unfinished result from execute()"), so every read here drains its result.
    return connection.execute(sql, parameters).fetchall()[0][0]


def _stored_version(connection: duckdb.DuckDBPyConnection) -> int:
    has_table = _scalar(
        connection,
        "SELECT count(*) FROM duckdb_tables() "
        "WHERE database_name = current_database() AND schema_name = 'main' AND table_name = 'schema_version'",
    )
    if not has_table:
        return 0
    return int(_scalar(connection, "SELECT coalesce(max(version), 0) FROM schema_version"))


def _has_any_table(connection: duckdb.DuckDBPyConnection) -> bool:
    return bool(_scalar(connection, "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database()"))


def _migrate(connection: duckdb.DuckDBPyConnection, path: Path, read_only: bool) -> int:
    """Bring the file up to the latest schema version; return the version it is at afterwards."""
    migrations = list(MIGRATIONS)  # read at call time: tests (and future code) may extend the module's list
    _check_migration_list(migrations)
    latest = migrations[-1].version if migrations else 0
    current = _stored_version(connection)
    if current > latest:
        raise StoreError(
            f"facecast store {path} is at schema version {current}, newer than this facecast knows (up to "
            f"{latest}). It was written by a newer facecast; upgrade facecast to use it. The file was not modified."
        )
    if current == 0 and _has_any_table(connection):
        raise StoreError(
            f"{path} is a DuckDB database but not a facecast store (it has tables but no schema_version); refusing "
            f"to migrate it. Point FACECAST_DB at another file."
        )
    pending = [migration for migration in migrations if migration.version > current]
    if pending and read_only:
        raise StoreError(
            f"facecast store {path} is at schema version {current} and needs migrating to {latest}; a read-only "
            f"open cannot migrate. Open it once read-write (e.g. start the app) first."
        )
    for migration in pending:
        connection.execute("BEGIN TRANSACTION")
        try:
            connection.execute(_SCHEMA_VERSION_TABLE)
            if isinstance(migration.apply, str):
                connection.execute(migration.apply)
            else:
                migration.apply(connection)
            connection.execute(
                "INSERT INTO schema_version (version, description) VALUES (?, ?)",
                [migration.version, migration.description],
            )
            connection.execute("COMMIT")
        except BaseException as error:
            _rollback_quietly(connection)
            if isinstance(error, duckdb.Error):
                raise StoreError(
                    f"migration {migration.version} ({migration.description}) failed on {path}; rolled back, the "
                    f"store stays at version {migration.version - 1}: {error}"
                ) from error
            raise
    return latest if pending else current


def _rollback_quietly(connection: duckdb.DuckDBPyConnection) -> None:
    # Called while another exception is propagating: that one is the story; a failing ROLLBACK (connection already
    # broken, no transaction left) must not replace it.
    try:
        connection.execute("ROLLBACK")
    except duckdb.Error:
        pass


def open_store(path: str | Path | None = None, *, read_only: bool = False) -> Store:
    """Open (creating and migrating if needed) the facecast store at ``path`` (default: ``Settings.db_path``).

    Raises StoreLocked when another process holds the file and StoreError when it cannot be used (corrupt, newer
    schema, not a facecast store, a read-only open of a missing or outdated file).
    """
    db_path = Path(path if path is not None else load_settings().db_path).expanduser().resolve()
    if read_only:
        if not db_path.is_file():
            raise StoreError(f"no facecast store at {db_path} (a read-only open never creates one)")
    else:
        db_path.parent.mkdir(parents=True, exist_ok=True)
    write_lock = _write_lock_for(db_path)
    connection = _connect(db_path, read_only)
    try:
        # Under the write lock: two threads opening the same new file at once must not both run migration 1.
        with write_lock:
            version = _migrate(connection, db_path, read_only)
        return Store(db_path, connection, write_lock, read_only=read_only, schema_version=version)
    except BaseException:
        connection.close()
        raise


# --------------------------------------------------------------------------------------------------------------------
# Store
# --------------------------------------------------------------------------------------------------------------------


class Transaction:
    """The handle ``Store.transaction()`` yields: runs SQL inside the open transaction, only in its own thread."""

    def __init__(self, connection: duckdb.DuckDBPyConnection) -> None:
        self._connection = connection
        self.thread_id = threading.get_ident()
        self.active = True
        # Set when an inner (joined) transaction block failed: the outer block must not commit a partial result
        # even if its code caught the exception.
        self.rollback_only = False

    def execute(self, sql: str, parameters: Sequence[Any] | Mapping[str, Any] | None = None) -> list[tuple]:
        """Run one statement (or several, without parameters) and return all its rows."""
        self._check_usable()
        return self._connection.execute(sql, parameters).fetchall()

    def insert_arrow(self, table_name: str, rows: pa.Table) -> None:
        """Insert an Arrow table into ``table_name``, matching columns by name (bulk path for vectors)."""
        self._check_usable()
        view_name = f"incoming_{uuid.uuid4().hex}"
        self._connection.register(view_name, rows)
        try:
            columns = ", ".join(rows.column_names)
            self._connection.execute(f"INSERT INTO {table_name} ({columns}) SELECT {columns} FROM {view_name}")
        except duckdb.Error:
            # After a failed INSERT the transaction is aborted and unregister() fails too ("transaction aborted"):
            # that second error must not hide the first (e.g. which constraint the rows violated).
            try:
                self._connection.unregister(view_name)
            except duckdb.Error:
                pass
            raise
        self._connection.unregister(view_name)

    def _check_usable(self) -> None:
        if not self.active:
            raise StoreError("this transaction has ended; open a new one with store.transaction()")
        if threading.get_ident() != self.thread_id:
            raise StoreError("a transaction can only be used by the thread that opened it")


class Store:
    """An open facecast store. Create with :func:`open_store`; close with :meth:`close` or a ``with`` block."""

    def __init__(
        self,
        path: Path,
        connection: duckdb.DuckDBPyConnection,
        write_lock: threading.RLock,
        *,
        read_only: bool,
        schema_version: int,
    ) -> None:
        self.path = path
        self.read_only = read_only
        self.schema_version = schema_version
        self._connection = connection  # the writer: used only while holding _write_lock
        self._write_lock = write_lock
        # Parent of the per-read cursors. Created now, while only this thread knows the Store; cursor() on it is
        # guarded by _cursor_lock so concurrent reads never touch one connection object at the same time.
        self._cursor_parent = connection.cursor()
        self._cursor_lock = threading.Lock()
        self._transaction: Transaction | None = None
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("read-only" if self.read_only else "read-write")
        return f"Store({str(self.path)!r}, {state}, schema_version={self.schema_version})"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the store; waits for a running transaction (in another thread) to finish. Idempotent."""
        if self._in_own_transaction():
            raise StoreError("close() called inside a transaction; leave the `with store.transaction()` block first")
        with self._write_lock, self._cursor_lock:
            if self._closed:
                return
            self._closed = True
            self._cursor_parent.close()
            self._connection.close()

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
        with self._write_lock:
            self._check_open()
            self._connection.execute("BEGIN TRANSACTION")
            transaction = Transaction(self._connection)
            self._transaction = transaction
            try:
                yield transaction
                if transaction.rollback_only:
                    raise StoreError("a nested transaction block failed; the whole transaction was rolled back")
            except BaseException:
                self._end_transaction(transaction)
                _rollback_quietly(self._connection)
                raise
            self._end_transaction(transaction)
            try:
                self._connection.execute("COMMIT")
            except duckdb.Error as error:
                _rollback_quietly(self._connection)  # a failed COMMIT may leave the transaction open
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
        """A connection to read with.

        A DuckDB connection object is not safe to use from two threads at once. Two ways out: share the writer
        connection under the write lock, or give each read its own cursor (a new connection to the same database).
        Cursors win: a Streamlit page reading the history should not wait for a long ingest in another session,
        and DuckDB's MVCC gives each cursor a consistent snapshot of committed data. Inside a transaction the
        owning thread reads on the writer connection instead, so it sees its own uncommitted rows.
        """
        if self._in_own_transaction():
            yield self._connection
            return
        with self._cursor_lock:
            self._check_open()
            cursor = self._cursor_parent.cursor()
        try:
            yield cursor
        finally:
            cursor.close()

    def _read_df(self, sql: str, parameters: Sequence[Any] | None = None) -> pd.DataFrame:
        with self._reading() as connection:
            return connection.execute(sql, parameters).df()

    def _read_rows(self, sql: str, parameters: Sequence[Any] | None = None) -> list[tuple]:
        with self._reading() as connection:
            return connection.execute(sql, parameters).fetchall()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"facecast store {self.path} is closed")

    def applied_migrations(self) -> pd.DataFrame:
        """The ``schema_version`` table: version, applied_at, description, oldest first."""
        return self._read_df("SELECT version, applied_at, description FROM schema_version ORDER BY version")

    # ---- images_classified --------------------------------------------------------------------------------------

    def add_classifications(self, rows: Iterable[ImageClassification | Mapping[str, Any]]) -> list[int]:
        """Store classified images (dataclasses or mappings with the same keys); return their ids, in order.

        All rows go in one transaction (or join the caller's): either all are stored or none.
        """
        classifications = [_as_classification(row) for row in rows]  # validates every row before writing any
        if not classifications:
            return []
        with self.transaction() as tx:
            # Ids are drawn first and assigned here, so each returned id provably belongs to its input row
            # (RETURNING on a bulk insert does not promise input order).
            ids = [
                row[0]
                for row in tx.execute(
                    "SELECT nextval('images_classified_id_seq') FROM range(?)", [len(classifications)]
                )
            ]
            ids.sort()
            tx.insert_arrow("images_classified", _classifications_to_arrow(ids, classifications))
        return ids

    def classifications(self, limit: int | None = 100) -> pd.DataFrame:
        """The newest ``limit`` classified images (all when None), newest first; vectors as float32 arrays."""
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise ValueError(f"limit must be a non-negative int or None, got {limit!r}")
        columns = ", ".join(_CLASSIFICATION_COLUMNS)
        sql = f"SELECT {columns} FROM images_classified ORDER BY id DESC"
        if limit is None:
            return self._read_df(sql)
        return self._read_df(sql + " LIMIT ?", [limit])

    def find_classification(
        self, content_sha256: str, model_name: str, model_version: str
    ) -> ImageClassification | None:
        """The newest stored classification of this image content by this model version, or None."""
        columns = ", ".join(_CLASSIFICATION_COLUMNS)
        rows = self._read_rows(
            f"SELECT {columns} FROM images_classified "
            "WHERE content_sha256 = ? AND model_name = ? AND model_version = ? ORDER BY id DESC LIMIT 1",
            [content_sha256, model_name, model_version],
        )
        if not rows:
            return None
        return ImageClassification(**dict(zip(_CLASSIFICATION_COLUMNS, rows[0], strict=True)))

    # ---- clip analyses ------------------------------------------------------------------------------------------

    def add_analysis(self, report: Any, observations: Sequence[Any], fingerprint: str) -> int:
        """Store one clip analysis (a facecast.clips.report.EngagementReport and its facecast.clips.scoring.Observation rows)
        in one transaction; returns the analysis id. The clip row is created on first sight of its content."""
        import json

        clip = report.clip
        document = json.dumps(report.as_dict(), separators=(",", ":"))
        engagement = report.engagement
        with self.transaction() as tx:
            tx.execute(
                "INSERT INTO clips (content_sha256, name, size_bytes, duration_s, width, height, fps, codec) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (content_sha256) DO NOTHING",
                [clip.sha256, clip.name, clip.size_bytes, clip.duration_s, clip.width, clip.height, clip.fps,
                 clip.codec])
            (analysis_id,), = tx.execute("SELECT nextval('clip_analyses_id_seq')")
            tx.execute(
                "INSERT INTO clip_analyses (id, content_sha256, fingerprint, name, faces_found, engagement, "
                "engagement_low, engagement_high, engagement_class, resonance, shareability, report_json) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [analysis_id, clip.sha256, fingerprint, clip.name, report.faces_found,
                 engagement.value if engagement else None, engagement.low if engagement else None,
                 engagement.high if engagement else None, report.engagement_class,
                 report.resonance.value if report.resonance else None,
                 report.shareability.value if report.shareability else None, document])
            if report.characters:
                tx.insert_arrow("clip_tracks", pa.table({
                    "analysis_id": pa.array([analysis_id] * len(report.characters), type=pa.int64()),
                    "track_id": pa.array([c.track_id for c in report.characters], type=pa.int32()),
                    "first_s": pa.array([c.first_s for c in report.characters], type=pa.float64()),
                    "last_s": pa.array([c.last_s for c in report.characters], type=pa.float64()),
                    "observations": pa.array([c.observations for c in report.characters], type=pa.int32()),
                    "screen_time_s": pa.array([c.screen_time_s for c in report.characters], type=pa.float64()),
                    "dominant_emotion": pa.array([c.dominant_emotion for c in report.characters]),
                    "style": pa.array([c.style for c in report.characters]),
                }))
            if observations:
                tx.insert_arrow("clip_faces", pa.table({
                    "analysis_id": pa.array([analysis_id] * len(observations), type=pa.int64()),
                    "track_id": pa.array([o.track_id for o in observations], type=pa.int32()),
                    "t_s": pa.array([o.t_s for o in observations], type=pa.float64()),
                    "box": _vector_column([np.asarray(o.box, np.float32) for o in observations], 4),
                    "detection_score": pa.array([o.detection_score for o in observations], type=pa.float32()),
                    "emotion": pa.array([o.emotion for o in observations]),
                    "emotion_probs": _vector_column([o.emotion_probs for o in observations], len(EMOTIONS)),
                    "style_probs": _vector_column([o.style_probs for o in observations], len(STYLES)),
                    "action_params": _vector_column([o.action_params for o in observations], len(ACTION_PARAMS)),
                }))
        return int(analysis_id)

    def find_analysis(self, content_sha256: str, fingerprint: str | None = None) -> StoredAnalysis | None:
        """The newest analysis of this file content (with these settings and models, when a fingerprint is given)."""
        sql = f"SELECT {_ANALYSIS_COLUMNS} FROM clip_analyses WHERE content_sha256 = ?"
        parameters: list[Any] = [content_sha256]
        if fingerprint is not None:
            sql += " AND fingerprint = ?"
            parameters.append(fingerprint)
        rows = self._read_rows(sql + " ORDER BY id DESC LIMIT 1", parameters)
        return StoredAnalysis(*rows[0]) if rows else None

    def get_analysis(self, analysis_id: int) -> StoredAnalysis | None:
        rows = self._read_rows(f"SELECT {_ANALYSIS_COLUMNS} FROM clip_analyses WHERE id = ?", [int(analysis_id)])
        return StoredAnalysis(*rows[0]) if rows else None

    def analyses(self, limit: int | None = 100) -> pd.DataFrame:
        """The newest analyses first: id, name, created_at, headline scores and clip duration (no report JSON)."""
        sql = ("SELECT a.id, a.name, a.created_at, a.faces_found, a.engagement, a.engagement_low, a.engagement_high, "
               "a.engagement_class, a.resonance, a.shareability, c.duration_s, a.content_sha256 "
               "FROM clip_analyses a JOIN clips c USING (content_sha256) ORDER BY a.id DESC")
        if limit is None:
            return self._read_df(sql)
        return self._read_df(sql + " LIMIT ?", [int(limit)])

    def analysis_faces(self, analysis_id: int) -> pd.DataFrame:
        """The per-face rows of one analysis, in time order."""
        return self._read_df("SELECT * FROM clip_faces WHERE analysis_id = ? ORDER BY t_s, track_id",
                             [int(analysis_id)])


    # ---- expression library -------------------------------------------------------------------------------------

    def _read_arrow(self, sql: str, parameters: Sequence[Any] | None = None) -> pa.Table:
        import warnings

        with self._reading() as connection, warnings.catch_warnings():
            # duckdb warns that a DB-API result makes one extra copy for Arrow; for a few hundred rows that is cheap
            warnings.simplefilter("ignore", UserWarning)
            return connection.execute(sql, parameters).to_arrow_table()

    def add_library_items(self, items: Sequence[LibraryItem]) -> list[int]:
        """Insert library items in one transaction (or the caller's); returns their ids in input order.

        Content already in the library (or twice in the batch) is refused with StoreError and nothing is stored:
        callers de-duplicate first with :meth:`library_ids_by_hash`."""
        items = list(items)
        if not items:
            return []
        hashes = [item.content_sha256 for item in items]
        if len(set(hashes)) != len(hashes):
            raise StoreError("the same image content appears twice in one batch of library items")
        with self.transaction() as tx:
            # checked here rather than left to the UNIQUE constraint: its error would abort the transaction
            # with a message about the transaction, not about the duplicate
            clash = tx.execute("SELECT content_sha256, id FROM library_items "
                               "WHERE content_sha256 IN (SELECT unnest(?::VARCHAR[])) ORDER BY id", [hashes])
            if clash:
                raise StoreError(f"{len(clash)} image(s) are already in the library (first: item {clash[0][1]}, "
                                 f"sha256 {clash[0][0]}); nothing was stored")
            ids = sorted(row[0] for row in tx.execute("SELECT nextval('library_items_id_seq') FROM range(?)",
                                                      [len(items)]))
            params_present = [item.params is not None for item in items]
            params = pa.FixedSizeListArray.from_arrays(
                pa.array(np.concatenate([item.params if item.params is not None else np.zeros(4, np.float32)
                                         for item in items]), type=pa.float32()), len(ACTION_PARAMS),
                mask=pa.array([not present for present in params_present]))
            tx.insert_arrow("library_items", pa.table({
                "id": pa.array(ids, type=pa.int64()),
                "content_sha256": pa.array([item.content_sha256 for item in items], type=pa.string()),
                "source": pa.array([item.source for item in items], type=pa.string()),
                "source_path": pa.array([item.source_path for item in items], type=pa.string()),
                "style": pa.array([item.style for item in items], type=pa.string()),
                "emotion": pa.array([item.emotion for item in items], type=pa.string()),
                "character": pa.array([item.character for item in items], type=pa.string()),
                "intensity": pa.array([item.intensity for item in items], type=pa.float32()),
                "params": params,
                "emotion_probs": _vector_column([item.emotion_probs for item in items], len(EMOTIONS)),
                "style_probs": _vector_column([item.style_probs for item in items], len(STYLES)),
                "labelled": pa.array([bool(item.labelled) for item in items], type=pa.bool_()),
                "embedding": _vector_column([item.embedding for item in items], EMBEDDING_DIM),
                "thumbnail": pa.array([bytes(item.thumbnail) for item in items], type=pa.binary()),
            }))
        return ids

    def library_ids_by_hash(self, hashes: Sequence[str]) -> dict[str, int]:
        """content_sha256 -> id for the hashes already in the library."""
        if not hashes:
            return {}
        rows = self._read_rows("SELECT content_sha256, id FROM library_items "
                               "WHERE content_sha256 IN (SELECT unnest(?::VARCHAR[]))", [list(hashes)])
        return {digest: int(item_id) for digest, item_id in rows}

    def library_count(self) -> int:
        return int(self._read_rows("SELECT count(*) FROM library_items")[0][0])

    def library_id_summary(self) -> tuple[int, int, int]:
        """(count, sum of ids, sum of squared ids): a cheap fingerprint of the id set the FAISS index must hold."""
        count, total, squares = self._read_rows(
            "SELECT count(*), coalesce(sum(id::HUGEINT), 0)::VARCHAR, coalesce(sum(id::HUGEINT * id), 0)::VARCHAR "
            "FROM library_items")[0]
        return int(count), int(total), int(squares)

    def library_ids(self) -> np.ndarray:
        table = self._read_arrow("SELECT id FROM library_items ORDER BY id")
        return table.column("id").to_numpy().astype(np.int64)

    def library_embeddings(self, ids: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64 [N], embeddings float32 [N, EMBEDDING_DIM]) of the given items (all when None), by id."""
        if ids is None:
            table = self._read_arrow("SELECT id, embedding FROM library_items ORDER BY id")
        else:
            table = self._read_arrow("SELECT id, embedding FROM library_items WHERE id IN (SELECT unnest(?::BIGINT[])) "
                                     "ORDER BY id", [[int(i) for i in ids]])
        return table.column("id").to_numpy().astype(np.int64), _arrow_matrix(table.column("embedding"), EMBEDDING_DIM)

    def library_candidates(self, ids: Sequence[int] | None = None, *, emotion: str | None = None,
                           style: str | None = None, character: str | None = None,
                           with_embeddings: bool = False) -> dict[str, np.ndarray]:
        """What the ranking needs about items (those in `ids`, or every item matching the filters when None),
        filtered by emotion / style / character. Column name -> numpy array, rows in ascending id order;
        `params` rows are NaN where unknown, `character` None where unknown."""
        where, parameters = _library_filter_sql(emotion, style, character)
        columns = ", ".join(_LIBRARY_RANKING_COLUMNS)
        extra = ", embedding" if with_embeddings else ""
        sql = (f"SELECT {columns}, coalesce(params, {_NAN_PARAMS}) AS params, emotion_probs, style_probs{extra} "
               "FROM library_items WHERE true")
        if ids is not None:
            sql += " AND id IN (SELECT unnest(?::BIGINT[]))"
            parameters = [[int(i) for i in ids], *parameters]
        table = self._read_arrow(sql + where + " ORDER BY id", parameters)
        result = {name: table.column(name).to_numpy(zero_copy_only=False) for name in _LIBRARY_RANKING_COLUMNS}
        result["id"] = result["id"].astype(np.int64)
        result["intensity"] = np.asarray(
            [np.nan if v is None else v for v in table.column("intensity").to_pylist()], np.float32)
        result["params"] = _arrow_matrix(table.column("params"), len(ACTION_PARAMS))
        result["emotion_probs"] = _arrow_matrix(table.column("emotion_probs"), len(EMOTIONS))
        result["style_probs"] = _arrow_matrix(table.column("style_probs"), len(STYLES))
        if with_embeddings:
            result["embedding"] = _arrow_matrix(table.column("embedding"), EMBEDDING_DIM)
        return result

    def library_exact_search(self, vector: np.ndarray, k: int, *, emotion: str | None = None,
                             style: str | None = None, character: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact inner-product search in DuckDB over the items matching the filters: (ids, scores), best first.
        Used when filters are so selective that the approximate candidates would miss matches."""
        query = _float32_vector(vector, EMBEDDING_DIM, "query vector")
        where, parameters = _library_filter_sql(emotion, style, character)
        rows = self._read_rows(
            f"SELECT id, array_inner_product(embedding, ?::FLOAT[{EMBEDDING_DIM}]) AS score FROM library_items "
            f"WHERE true{where} ORDER BY score DESC, id LIMIT ?", [query.tolist(), *parameters, int(k)])
        return (np.asarray([r[0] for r in rows], np.int64), np.asarray([r[1] for r in rows], np.float32))

    def library_filtered_count(self, *, emotion: str | None = None, style: str | None = None,
                               character: str | None = None) -> int:
        where, parameters = _library_filter_sql(emotion, style, character)
        return int(self._read_rows(f"SELECT count(*) FROM library_items WHERE true{where}", parameters)[0][0])

    def library_items(self, ids: Sequence[int] | None = None, limit: int | None = 100) -> pd.DataFrame:
        """Items without embedding and thumbnail (the given ids, or the newest `limit`), newest first."""
        columns = ("id, content_sha256, source, source_path, emotion, style, character, intensity, params, "
                   "labelled, created_at, updated_at")
        if ids is not None:
            return self._read_df(f"SELECT {columns} FROM library_items WHERE id IN (SELECT unnest(?::BIGINT[])) "
                                 "ORDER BY id DESC", [[int(i) for i in ids]])
        sql = f"SELECT {columns} FROM library_items ORDER BY id DESC"
        return self._read_df(sql) if limit is None else self._read_df(sql + " LIMIT ?", [int(limit)])

    def library_thumbnail(self, item_id: int) -> bytes | None:
        rows = self._read_rows("SELECT thumbnail FROM library_items WHERE id = ?", [int(item_id)])
        return bytes(rows[0][0]) if rows else None

    def remove_library_items(self, ids: Sequence[int]) -> list[int]:
        """Delete items; returns the ids that existed (and are now gone)."""
        wanted = sorted({int(i) for i in ids})
        if not wanted:
            return []
        with self.transaction() as tx:
            found = [row[0] for row in tx.execute(
                "SELECT id FROM library_items WHERE id IN (SELECT unnest(?::BIGINT[])) ORDER BY id", [wanted])]
            if found:
                tx.execute("DELETE FROM library_items WHERE id IN (SELECT unnest(?::BIGINT[]))", [found])
        return [int(i) for i in found]

    def update_library_labels(self, item_id: int, *, emotion: str | None = None, style: str | None = None,
                              character: str | None = None) -> bool:
        """Set a person's labels on an item (the ranking then uses them one-hot); False when the id is unknown."""
        if emotion is not None and emotion not in EMOTIONS:
            raise ValueError(f"emotion {emotion!r} is not one of {EMOTIONS}")
        if style is not None and style not in STYLES:
            raise ValueError(f"style {style!r} is not one of {STYLES}")
        sets, parameters = [], []
        if emotion is not None:
            sets += ["emotion = ?", "emotion_probs = ?::FLOAT[7]"]
            parameters += [emotion, [float(e == emotion) for e in EMOTIONS]]
        if style is not None:
            sets += ["style = ?", "style_probs = ?::FLOAT[4]"]
            parameters += [style, [float(s == style) for s in STYLES]]
        if character is not None:
            sets.append("character = ?")
            parameters.append(character)
        if not sets:
            raise ValueError("nothing to update: give an emotion, a style or a character")
        with self.transaction() as tx:
            if not tx.execute("SELECT count(*) FROM library_items WHERE id = ?", [int(item_id)])[0][0]:
                return False
            tx.execute(f"UPDATE library_items SET {', '.join(sets)}, labelled = true, updated_at = {_UTC_NOW} "
                       "WHERE id = ?", [*parameters, int(item_id)])
        return True

    def library_stats(self) -> dict[str, Any]:
        """Counts per emotion, style, source and labelled, plus totals."""
        total, characters, labelled = self._read_rows(
            "SELECT count(*), count(DISTINCT character), count(*) FILTER (WHERE labelled) FROM library_items")[0]
        stats: dict[str, Any] = {"items": int(total), "characters": int(characters), "labelled": int(labelled)}
        for column in ("emotion", "style", "source"):
            rows = self._read_rows(f"SELECT {column}, count(*) FROM library_items GROUP BY ALL ORDER BY 2 DESC, 1")
            stats[column] = {str(value): int(count) for value, count in rows}
        stats["feedback"] = int(self._read_rows("SELECT count(*) FROM library_feedback")[0][0])
        return stats

    # ---- library feedback and ranking weights -------------------------------------------------------------------

    def add_library_feedback(self, profile: str, query_id: str, rows: Sequence[Mapping[str, Any]]) -> int:
        """Store feedback rows (each: item_id, kind, rating (or None), rank (or None), phi [5]); returns how many."""
        rows = list(rows)
        if not rows:
            return 0
        for row in rows:
            if row["kind"] not in ("selected", "skipped", "rating"):
                raise ValueError(f"feedback kind must be selected, skipped or rating, got {row['kind']!r}")
        with self.transaction() as tx:
            tx.insert_arrow("library_feedback", pa.table({
                "profile": pa.array([profile] * len(rows), type=pa.string()),
                "query_id": pa.array([query_id] * len(rows), type=pa.string()),
                "item_id": pa.array([int(row["item_id"]) for row in rows], type=pa.int64()),
                "kind": pa.array([row["kind"] for row in rows], type=pa.string()),
                "rating": pa.array([row.get("rating") for row in rows], type=pa.float32()),
                "rank": pa.array([row.get("rank") for row in rows], type=pa.int32()),
                "phi": _vector_column([_float32_vector(row["phi"], N_RANKING_TERMS, "phi") for row in rows],
                                      N_RANKING_TERMS),
            }))
        return len(rows)

    def library_feedback(self, profile: str) -> pd.DataFrame:
        """A profile's feedback joined with the items' current attributes (deleted items keep NULL attributes)."""
        return self._read_df(
            "SELECT f.id, f.query_id, f.item_id, f.kind, f.rating, f.rank, f.phi, f.created_at, i.style, i.emotion, "
            "i.character, i.intensity FROM library_feedback f LEFT JOIN library_items i ON i.id = f.item_id "
            "WHERE f.profile = ? ORDER BY f.id", [profile])

    def ranking_weights(self, profile: str) -> tuple[np.ndarray, int] | None:
        """(weights float32 [5], pairs learned from) stored for a profile, or None."""
        rows = self._read_rows("SELECT weights, pairs FROM ranking_weights WHERE profile = ?", [profile])
        if not rows:
            return None
        return np.asarray(rows[0][0], np.float32), int(rows[0][1])

    def set_ranking_weights(self, profile: str, weights: np.ndarray, pairs: int) -> None:
        vector = _float32_vector(weights, N_RANKING_TERMS, "weights")
        with self.transaction() as tx:
            # delete + insert: DuckDB's ON CONFLICT DO UPDATE does not bind current_timestamp in its SET list
            tx.execute("DELETE FROM ranking_weights WHERE profile = ?", [profile])
            tx.execute(f"INSERT INTO ranking_weights (profile, weights, pairs) VALUES (?, ?::FLOAT[{N_RANKING_TERMS}], ?)",
                       [profile, vector.tolist(), int(pairs)])

@dataclass(frozen=True)
class StoredAnalysis:
    """An analysis as listed in the history: its id, when, and the headline numbers."""

    id: int
    content_sha256: str
    fingerprint: str
    name: str
    created_at: datetime
    report_json: str


_ANALYSIS_COLUMNS = "id, content_sha256, fingerprint, name, created_at, report_json"


def _vector_column(vectors: Sequence[np.ndarray], length: int) -> pa.FixedSizeListArray:
    flat = np.concatenate(vectors).astype(np.float32, copy=False)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat, type=pa.float32()), length)


def _classifications_to_arrow(ids: Sequence[int], rows: Sequence[ImageClassification]) -> pa.Table:
    # Arrow, not executemany: DuckDB spends about a millisecond per executed statement, an Arrow scan inserts
    # thousands of rows in a few milliseconds, and FixedSizeList<float32> maps onto FLOAT[N] without conversion.
    return pa.table(
        {
            "id": pa.array(ids, type=pa.int64()),
            "content_sha256": pa.array([row.content_sha256 for row in rows], type=pa.string()),
            "source_path": pa.array([row.source_path for row in rows], type=pa.string()),
            "model_name": pa.array([row.model_name for row in rows], type=pa.string()),
            "model_version": pa.array([row.model_version for row in rows], type=pa.string()),
            "emotion": pa.array([row.emotion for row in rows], type=pa.string()),
            "emotion_probs": _vector_column([row.emotion_probs for row in rows], len(EMOTIONS)),
            "style": pa.array([row.style for row in rows], type=pa.string()),
            "style_probs": _vector_column([row.style_probs for row in rows], len(STYLES)),
            "action_params": _vector_column([row.action_params for row in rows], len(ACTION_PARAMS)),
        }
    )
