"""Backups of a whole store as Parquet: `facecast export FOLDER` and `facecast import FOLDER`.

A backup is a folder: one Parquet file per table (the library's 512-d vectors and thumbnails included, so an
imported library needs no Triton to be searchable again) and `manifest.json` (format, schema version, row counts
and a SHA-256 per file). Parquet because any tool a studio already has (DuckDB, pandas, Spark) reads it.

* Export reads every table inside one transaction, so the backup is one consistent moment of the store even while
  other processes write. It is written into a hidden sibling folder and renamed into place only once every file is
  written and flushed to disk: a kill at any moment leaves either no backup or a whole one, never half of one.
  An existing folder is never overwritten.
* Import goes into a store with no data in it (a fresh `--db`), checks every file against the manifest first,
  inserts every table in one transaction (all or nothing), and moves the id sequences past the imported ids so new
  rows never collide with them. A backup of an older schema imports into the current one (columns added since get
  their defaults); one of a newer schema is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from facecast.store.database import Store
from facecast.store.migrations import latest_schema_version

FORMAT = "facecast-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# Parents before children (clip_analyses references clips, clip_faces references clip_analyses), so an import that
# inserts in this order satisfies every foreign key.
TABLES = (
    "images_classified",
    "clips",
    "clip_analyses",
    "clip_tracks",
    "clip_faces",
    "library_items",
    "library_feedback",
    "ranking_weights",
)
# A stable row order makes two exports of an unchanged store byte-identical, so their checksums can be compared.
ORDER_BY = {
    "images_classified": "id",
    "clips": "content_sha256",
    "clip_analyses": "id",
    "clip_tracks": "analysis_id, track_id",
    "clip_faces": "analysis_id, track_id, t_s",
    "library_items": "id",
    "library_feedback": "id",
    "ranking_weights": "profile",
}
SEQUENCES = {
    "images_classified": "images_classified_id_seq",
    "clip_analyses": "clip_analyses_id_seq",
    "library_items": "library_items_id_seq",
    "library_feedback": "library_feedback_id_seq",
}


class BackupError(ValueError):
    """A backup that cannot be written or imported as asked; the message names the folder and the problem."""


@dataclass(frozen=True)
class BackupSummary:
    folder: Path
    schema_version: int
    rows: dict[str, int]

    def as_dict(self) -> dict[str, object]:
        return {"folder": str(self.folder), "schema_version": self.schema_version, "rows": self.rows}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _sql_string(value: str | Path) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _remove_abandoned_staging(folder: Path) -> None:
    """Staging folders of earlier exports to the same name whose process died (killed mid-export)."""
    for staging in folder.parent.glob(f".{folder.name}.partial-*"):
        try:
            pid = int(staging.name.rsplit("-", 2)[-2])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(staging, ignore_errors=True)
        except (ValueError, IndexError, PermissionError):
            continue  # not ours to judge, or a live process


def export_store(store: Store, folder: str | Path) -> BackupSummary:
    """Write the whole store to `folder` (which must not exist yet) as Parquet files and a manifest."""
    folder = Path(folder).expanduser().resolve()
    if folder.exists():
        raise BackupError(f"{folder} already exists; give a new folder name (a backup never overwrites one)")
    if not folder.parent.is_dir():
        raise BackupError(f"{folder.parent}: no such folder to write the backup into")
    _remove_abandoned_staging(folder)
    staging = folder.parent / f".{folder.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        rows: dict[str, int] = {}
        # One transaction: every table is read at the same moment, whatever other processes commit meanwhile.
        with store.transaction() as transaction:
            for table in TABLES:
                target = staging / f"{table}.parquet"
                transaction.execute(
                    f"COPY (SELECT * FROM {table} ORDER BY {ORDER_BY[table]}) TO {_sql_string(target)} "
                    "(FORMAT parquet, COMPRESSION zstd)"
                )
                rows[table] = int(transaction.execute(f"SELECT count(*) FROM {table}")[0][0])
        files = {}
        for table in TABLES:
            target = staging / f"{table}.parquet"
            _fsync(target)
            files[table] = {"file": target.name, "rows": rows[table], "sha256": _sha256(target)}
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "schema_version": store.schema_version,
            "exported_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "source": str(store.path),
            "tables": files,
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _fsync(staging / MANIFEST)
        _fsync(staging)
        staging.rename(folder)  # the one step that makes the backup appear, whole
        _fsync(folder.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return BackupSummary(folder, store.schema_version, rows)


def read_manifest(folder: str | Path) -> dict:
    """The manifest of a backup folder, with every file checked against it (size of the problem in the message)."""
    folder = Path(folder).expanduser()
    path = folder / MANIFEST
    if not folder.is_dir():
        raise BackupError(f"{folder}: no such backup folder")
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise BackupError(f"{folder}: not a facecast backup (no {MANIFEST})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BackupError(f"{path}: unreadable ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{path}: not a facecast backup manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BackupError(
            f"{path}: backup format {manifest.get('format_version')!r}; this facecast reads format {FORMAT_VERSION}"
        )
    schema = manifest.get("schema_version")
    if not isinstance(schema, int) or schema > latest_schema_version():
        raise BackupError(
            f"{folder}: made by a newer facecast (schema version {schema}; this one knows up to "
            f"{latest_schema_version()}); upgrade facecast to import it"
        )
    tables = manifest.get("tables")
    if not isinstance(tables, dict) or set(tables) != set(TABLES):
        raise BackupError(f"{path}: the manifest must list the tables {', '.join(TABLES)}")
    for table, entry in tables.items():
        file = folder / str(entry.get("file", ""))
        if file.parent != folder or not file.is_file():
            raise BackupError(f"{folder}: {table}'s file {entry.get('file')!r} is missing")
        if _sha256(file) != entry.get("sha256"):
            raise BackupError(f"{file}: does not match its checksum in {MANIFEST} (damaged or edited); not imported")
    return manifest


def import_store(store: Store, folder: str | Path) -> BackupSummary:
    """Load a backup into `store`, which must hold no data yet; all or nothing."""
    folder = Path(folder).expanduser().resolve()
    manifest = read_manifest(folder)
    with store.transaction() as transaction:
        held = {table: int(transaction.execute(f"SELECT count(*) FROM {table}")[0][0]) for table in TABLES}
        if any(held.values()):
            listed = ", ".join(f"{count} {table}" for table, count in held.items() if count)
            raise BackupError(
                f"{store.path} already holds data ({listed}); import into a new store (--db NEW.duckdb) so "
                "nothing is mixed or overwritten"
            )
        rows = {}
        for table in TABLES:
            entry = manifest["tables"][table]
            source = _sql_string(folder / entry["file"])
            transaction.execute(f"INSERT INTO {table} BY NAME SELECT * FROM read_parquet({source})")
            rows[table] = int(transaction.execute(f"SELECT count(*) FROM {table}")[0][0])
            if rows[table] != entry["rows"]:
                raise BackupError(f"{folder}: {table} has {rows[table]} rows, the manifest says {entry['rows']}")
        for table, sequence in SEQUENCES.items():
            # DuckDB cannot restart a sequence in place: draw it up to the largest imported id instead.
            transaction.execute(
                f"SELECT max(nextval('{sequence}')) FROM range((SELECT coalesce(max(id), 0) FROM {table}))"
            )
    return BackupSummary(folder, int(manifest["schema_version"]), rows)
