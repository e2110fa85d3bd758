"""`facecast export` / `facecast import` (facecast/store/backup.py): a whole store to Parquet and back, real DuckDB
files, the CLI as a subprocess, and a real `kill -9` in the middle of an export."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from facecast.config import PROJECT_ROOT
from facecast.store import open_store
from facecast.store.backup import TABLES, BackupError, export_store, import_store, read_manifest
from tests.legacy_store import build_legacy_store


def _contents(path: Path) -> dict[str, list[tuple]]:
    with open_store(path, read_only=True) as store:
        return {table: sorted(map(repr, store.read_rows(f"SELECT * FROM {table}"))) for table in TABLES}


def _cli(*args: str, db: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "facecast", *args, "--db", str(db)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_table_round_trips_and_new_ids_follow_the_imported_ones(tmp_path):
    source = build_legacy_store(tmp_path / "studio.duckdb")  # every table has rows (and it is upgraded on open)
    with open_store(source) as store:
        summary = export_store(store, tmp_path / "backup")
    assert summary.rows["library_items"] == 2 and summary.rows["clip_faces"] == 1
    manifest = read_manifest(tmp_path / "backup")
    assert {entry["rows"] for entry in manifest["tables"].values()} >= {1, 2}

    with open_store(tmp_path / "moved.duckdb") as moved:
        import_store(moved, tmp_path / "backup")
        ids, vectors = moved.library.embeddings()  # the vectors came along: no Triton needed to search again
        assert ids.tolist() == [1, 2] and np.allclose(vectors[0, :8], [i % 7 / 7 for i in range(8)])
        with moved.transaction() as transaction:
            transaction.execute(
                "INSERT INTO library_feedback (profile, query_id, item_id, kind, phi) "
                "VALUES ('ana', 'q9', 1, 'selected', [0, 0, 0, 0, 0])"
            )
        newest = moved.read_rows("SELECT max(id), count(*) FROM library_feedback")[0]
        assert newest == (3, 3)  # after the two imported rows, not colliding with them
    before, after = _contents(source), _contents(tmp_path / "moved.duckdb")
    after["library_feedback"] = [row for row in after["library_feedback"] if "'q9'" not in row]
    assert after == before


def test_two_exports_of_an_unchanged_store_are_identical(tmp_path):
    source = build_legacy_store(tmp_path / "studio.duckdb")
    with open_store(source) as store:
        export_store(store, tmp_path / "one")
        export_store(store, tmp_path / "two")
    sums = [{t: e["sha256"] for t, e in read_manifest(tmp_path / n)["tables"].items()} for n in ("one", "two")]
    assert sums[0] == sums[1]


def test_refusals_name_the_problem_and_change_nothing(tmp_path):
    source = build_legacy_store(tmp_path / "studio.duckdb")
    with open_store(source) as store:
        export_store(store, tmp_path / "backup")
        with pytest.raises(BackupError, match="already exists"):
            export_store(store, tmp_path / "backup")
        with pytest.raises(BackupError, match="already holds data .*2 library_items"):
            import_store(store, tmp_path / "backup")
    assert _contents(source) == _contents(source)

    manifest_path = tmp_path / "backup" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    newer = dict(manifest, schema_version=99)
    manifest_path.write_text(json.dumps(newer))
    with pytest.raises(BackupError, match="newer facecast .*schema version 99"):
        read_manifest(tmp_path / "backup")
    manifest_path.write_text(json.dumps(manifest))

    damaged = tmp_path / "backup" / "library_items.parquet"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    target = tmp_path / "new.duckdb"
    done = _cli("import", str(tmp_path / "backup"), db=target)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().endswith(
        "does not match its checksum in manifest.json (damaged or edited); not imported"
    )
    assert not target.exists()  # refused before a store file was made for it

    done = _cli("import", str(tmp_path / "nothing-here"), db=target)
    assert (done.returncode, done.stderr.strip()) == (
        2,
        f"facecast import: error: {tmp_path}/nothing-here: no such backup folder",
    )


def test_the_cli_exports_and_imports(tmp_path):
    source = build_legacy_store(tmp_path / "studio.duckdb")
    done = _cli("export", str(tmp_path / "backup"), "--json", db=source)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"]["library_items"] == 2
    done = _cli("import", str(tmp_path / "backup"), db=tmp_path / "moved.duckdb")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"imported {tmp_path / 'backup'} (schema version ")
    assert _contents(tmp_path / "moved.duckdb") == _contents(source)


def _large_store(path: Path, items: int) -> Path:
    with open_store(path) as store, store.transaction() as transaction:
        transaction.execute(
            "INSERT INTO library_items (content_sha256, source, source_path, style, emotion, emotion_probs, "
            "style_probs, labelled, embedding, thumbnail) "
            "SELECT md5(i::VARCHAR), 'synthetic', 'face-' || i || '.png', 'cartoon', 'joy', "
            "[0.1, 0.1, 0.1, 0.1, 0.2, 0.2, 0.2]::FLOAT[7], [0.25, 0.25, 0.25, 0.25]::FLOAT[4], false, "
            "list_transform(range(512), lambda x: random())::FLOAT[512], repeat('x', 3000)::BLOB FROM range(?) t(i)",
            [items],
        )
    return path


def test_a_kill_during_export_leaves_no_half_backup(tmp_path):
    """`kill -9` at several moments of a ~1 s export: the named folder is absent or whole, never half; the next
    export to the same name cleans up after the killed one and succeeds."""
    source = _large_store(tmp_path / "large.duckdb", 20_000)
    outcomes = []
    for delay in (0.3, 0.6, 0.9, 1.2, 1.8):
        target = tmp_path / f"backup-{delay}"
        export = subprocess.Popen(
            [sys.executable, "-m", "facecast", "export", str(target), "--db", str(source)],
            cwd=PROJECT_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        export.send_signal(signal.SIGKILL)
        export.wait()
        if target.exists():
            read_manifest(target)  # whole: every file there and matching its checksum
            outcomes.append("whole")
        else:
            outcomes.append("absent")
            leftovers = list(tmp_path.glob(f".{target.name}.partial-*"))
            with open_store(source) as store:
                export_store(store, target)
            assert all(not leftover.exists() for leftover in leftovers)
            assert read_manifest(target)["tables"]["library_items"]["rows"] == 20_000
    assert "absent" in outcomes, outcomes  # at least one kill landed mid-export, or the test proved nothing
    with open_store(source) as store:  # the store the killed exports read from is intact
        assert store.library.count() == 20_000
    assert not any(name.startswith(".") for name in os.listdir(tmp_path) if "partial" in name)
