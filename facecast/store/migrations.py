"""The schema, as literal SQL files applied in order: ``migrations/NNN_name.sql``.

A shipped migration never changes (files in the wild are at its version), and nothing in it is computed from a
Python constant: a vocabulary or vector size that grows needs the next file, not an edit. The first line of each
file is ``-- <description>``, stored with the version in ``schema_version``.

Opening a store applies the pending ones in order, each in its own transaction together with its
``schema_version`` row, so a failed migration leaves the file at the previous version with nothing half-applied.
A file whose version is newer than the code knows is refused and never written to: an older facecast must not
"fix" a newer schema. Adding one: write ``NNN_what.sql`` with the next number (1, 2, 3, ... without gaps); a step
that needs Python (a backfill) can be a :class:`Migration` whose ``apply`` is a function of the connection, run
inside the migration's transaction (it must not BEGIN/COMMIT and should drain results with ``fetchall()``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from facecast.store.errors import StoreError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_FILE_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")

# Created inside every migration's transaction (IF NOT EXISTS), so version 1 and the table appear together.
SCHEMA_VERSION_TABLE = """
    CREATE TABLE IF NOT EXISTS schema_version (
        version     INTEGER PRIMARY KEY,
        applied_at  TIMESTAMP NOT NULL DEFAULT (current_timestamp AT TIME ZONE 'UTC'),
        description VARCHAR NOT NULL
    )
"""


@dataclass(frozen=True)
class Migration:
    """One forward step of the schema. ``apply`` is SQL or a function of the connection, run inside a transaction."""

    version: int
    description: str
    apply: str | Callable[[duckdb.DuckDBPyConnection], None]


def read_migrations(folder: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every ``NNN_name.sql`` in `folder`, in version order."""
    migrations = []
    for path in sorted(folder.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise StoreError(f"{path}: migration files are named NNN_what.sql (three digits, lower case)")
        sql = path.read_text(encoding="utf-8")
        first = sql.splitlines()[0] if sql else ""
        if not first.startswith("-- "):
            raise StoreError(f"{path}: the first line must be '-- <description>'")
        migrations.append(Migration(int(match.group(1)), first[3:].strip(), sql))
    return migrations


MIGRATIONS: list[Migration] = read_migrations()


def latest_schema_version() -> int:
    """The schema version this code writes: the version of the last known migration."""
    return MIGRATIONS[-1].version if MIGRATIONS else 0


def check_migration_list(migrations: Sequence[Migration]) -> None:
    versions = [migration.version for migration in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise StoreError(f"facecast store migrations must be numbered 1, 2, 3, ... without gaps; got {versions}")


def scalar(connection: duckdb.DuckDBPyConnection, sql: str, parameters: Sequence[object] | None = None) -> object:
    # fetchall, not fetchone: in duckdb 2.x a result that was not read to its end blocks sql()/register() on the
    # connection ("unfinished result from execute()"), so every read here drains its result.
    return connection.execute(sql, parameters).fetchall()[0][0]


def stored_version(connection: duckdb.DuckDBPyConnection) -> int:
    has_table = scalar(
        connection,
        "SELECT count(*) FROM duckdb_tables() "
        "WHERE database_name = current_database() AND schema_name = 'main' AND table_name = 'schema_version'",
    )
    if not has_table:
        return 0
    return int(str(scalar(connection, "SELECT coalesce(max(version), 0) FROM schema_version")))


def _has_any_table(connection: duckdb.DuckDBPyConnection) -> bool:
    return bool(scalar(connection, "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database()"))


def migrate(connection: duckdb.DuckDBPyConnection, path: Path, read_only: bool) -> int:
    """Bring the file up to the latest schema version; return the version it is at afterwards."""
    migrations = list(MIGRATIONS)  # read at call time: tests (and future code) may extend the module's list
    check_migration_list(migrations)
    latest = migrations[-1].version if migrations else 0
    current = stored_version(connection)
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
            connection.execute(SCHEMA_VERSION_TABLE)
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
            rollback_quietly(connection)
            if isinstance(error, duckdb.Error):
                raise StoreError(
                    f"migration {migration.version} ({migration.description}) failed on {path}; rolled back, the "
                    f"store stays at version {migration.version - 1}: {error}"
                ) from error
            raise
    return latest if pending else current


def rollback_quietly(connection: duckdb.DuckDBPyConnection) -> None:
    # Called while another exception is propagating: that one is the story; a failing ROLLBACK (connection already
    # broken, no transaction left) must not replace it.
    try:
        connection.execute("ROLLBACK")
    except duckdb.Error:
        pass
