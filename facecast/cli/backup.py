"""`facecast export FOLDER` and `facecast import FOLDER`: the whole store to Parquet and back (store.backup)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from facecast.cli import options
from facecast.cli.exits import EXIT_OK
from facecast.config import Settings

if TYPE_CHECKING:
    from facecast.store.backup import BackupSummary


def export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", type=Path, help="new folder to write the backup into (never overwritten)")
    options.store(parser, what="DuckDB file to back up")
    options.json_output(parser)


def import_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", type=Path, help="a folder written by `facecast export`")
    options.store(parser, what="DuckDB file to import into; it must hold no data yet (a new file is created)")
    options.json_output(parser)


def _report(summary: BackupSummary, verb: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary.as_dict(), indent=2))
        return
    counted = ", ".join(f"{count} {table}" for table, count in summary.rows.items() if count) or "no rows"
    print(f"{verb} {summary.folder} (schema version {summary.schema_version}): {counted}")


def export(args: argparse.Namespace, settings: Settings) -> int:
    from facecast.store import open_store
    from facecast.store.backup import export_store

    with open_store(settings.db_path) as store:
        _report(export_store(store, args.folder), "exported to", args.json)
    return EXIT_OK


def import_(args: argparse.Namespace, settings: Settings) -> int:
    from facecast.store import open_store
    from facecast.store.backup import import_store, read_manifest

    read_manifest(args.folder)  # a damaged or foreign folder is refused before a store file is created for it
    with open_store(settings.db_path) as store:
        _report(import_store(store, args.folder), "imported", args.json)
    return EXIT_OK
