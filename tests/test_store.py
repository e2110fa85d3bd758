"""facecast.store on real DuckDB files in temporary folders."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from facecast.store import (
    ImageClassification,
    Migration,
    StoreError,
    StoreLocked,
    latest_schema_version,
    open_store,
)
from facecast.store import migrations as store_module
from facecast.vocab import EMOTIONS

LATEST = latest_schema_version()


def make_row(index: int = 0, *, sha: str | None = None, model_version: str = "1") -> ImageClassification:
    rng = np.random.default_rng(index)
    emotion_probs = rng.random(7, dtype=np.float32)
    style_probs = rng.random(4, dtype=np.float32)
    return ImageClassification(
        content_sha256=sha or hashlib.sha256(f"image-{index}".encode()).hexdigest(),
        source_path=f"/images/{index}.png",
        model_name="emotion_cnn",
        model_version=model_version,
        emotion=EMOTIONS[int(np.argmax(emotion_probs))],
        emotion_probs=emotion_probs / emotion_probs.sum(),
        style="cartoon",
        style_probs=style_probs / style_probs.sum(),
        action_params=rng.random(4, dtype=np.float32),
    )


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "folder" / "facecast.duckdb"


# ---- creation, versions, migrations ----------------------------------------------------------------------------------


def test_fresh_store_is_created_at_the_latest_version(db_path: Path) -> None:
    with open_store(db_path) as store:
        assert db_path.is_file()  # parent folders created
        assert store.schema_version == LATEST == len(store_module.MIGRATIONS)
        migrations = store.applied_migrations()
        assert migrations["version"].tolist() == list(range(1, LATEST + 1))
        assert "images_classified" in migrations["description"][0]
        assert store.classifications.newest().empty


def test_default_path_comes_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACECAST_DB", str(tmp_path / "from_env" / "store.duckdb"))
    with open_store() as store:
        assert store.path == (tmp_path / "from_env" / "store.duckdb").resolve()


def test_reopen_is_idempotent_and_keeps_data(db_path: Path) -> None:
    with open_store(db_path) as store:
        store.classifications.add([make_row(1)])
    for _ in range(2):
        with open_store(db_path) as store:
            assert store.schema_version == LATEST
            assert store.applied_migrations()["version"].tolist() == list(range(1, LATEST + 1))
            assert len(store.classifications.newest()) == 1


def test_newer_schema_version_is_refused_and_file_untouched(db_path: Path) -> None:
    open_store(db_path).close()
    connection = duckdb.connect(str(db_path))
    connection.execute("INSERT INTO schema_version (version, description) VALUES (99, 'from the future')")
    connection.close()
    before = file_digest(db_path)

    with pytest.raises(StoreError, match=rf"schema version 99, newer than this facecast knows \(up to {LATEST}\)"):
        open_store(db_path)
    assert file_digest(db_path) == before


def test_new_migrations_apply_forward_and_keep_data(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with open_store(db_path) as store:
        [row_id] = store.classifications.add([make_row(1)])

    def add_review_column(connection: duckdb.DuckDBPyConnection) -> None:
        connection.execute("ALTER TABLE images_classified ADD COLUMN reviewed BOOLEAN DEFAULT false")
        connection.execute("UPDATE images_classified SET reviewed = true WHERE emotion IS NOT NULL")

    monkeypatch.setattr(
        store_module,
        "MIGRATIONS",
        [
            *store_module.MIGRATIONS,
            Migration(LATEST + 1, "reviewed flag", add_review_column),
            Migration(
                LATEST + 2,
                "notes table",
                "CREATE TABLE notes (id INTEGER, body VARCHAR); INSERT INTO notes VALUES (1, 'x')",
            ),
        ],
    )
    with open_store(db_path) as store:
        assert store.schema_version == LATEST + 2
        assert store.applied_migrations()["version"].tolist() == list(range(1, LATEST + 3))
        assert store.read_rows("SELECT id, reviewed FROM images_classified") == [(row_id, True)]
        assert store.read_rows("SELECT body FROM notes") == [("x",)]
        assert store.classifications.find(make_row(1).content_sha256, "emotion_cnn", "1") == make_row(1)
        store.classifications.add([make_row(2)])  # the typed writer still works on the migrated schema


def test_failed_migration_rolls_back_completely(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    open_store(db_path).close()
    broken = Migration(LATEST + 1, "half a migration", "CREATE TABLE half (x INTEGER); SELECT * FROM no_such_table")
    monkeypatch.setattr(store_module, "MIGRATIONS", [*store_module.MIGRATIONS, broken])

    with pytest.raises(StoreError, match=f"migration {LATEST + 1} .* failed .* stays at version {LATEST}"):
        open_store(db_path)

    monkeypatch.undo()
    with open_store(db_path) as store:
        assert store.schema_version == LATEST
        assert store.read_rows("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'half'") == [(0,)]


def test_migration_list_with_a_gap_is_rejected(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        store_module, "MIGRATIONS", [*store_module.MIGRATIONS, Migration(LATEST + 2, "gap", "SELECT 1")]
    )
    with pytest.raises(StoreError, match="without gaps"):
        open_store(db_path)


def test_a_foreign_duckdb_file_is_not_migrated(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    connection = duckdb.connect(str(db_path))
    connection.execute("CREATE TABLE someone_elses (x INTEGER)")
    connection.close()
    with pytest.raises(StoreError, match="not a facecast store"):
        open_store(db_path)


# ---- transactions and threads ----------------------------------------------------------------------------------------


def test_rollback_on_exception_leaves_no_rows(db_path: Path) -> None:
    with open_store(db_path) as store:
        with pytest.raises(RuntimeError, match="boom"):
            with store.transaction() as tx:
                store.classifications.add([make_row(1), make_row(2)])
                tx.execute("INSERT INTO schema_version (version, description) VALUES (50, 'inside the tx')")
                assert len(store.classifications.newest()) == 2  # the owning thread sees its own uncommitted rows
                raise RuntimeError("boom")
        assert store.classifications.newest().empty
        assert store.applied_migrations()["version"].tolist() == list(range(1, LATEST + 1))


def test_caught_failure_in_a_nested_block_still_rolls_back_everything(db_path: Path) -> None:
    with open_store(db_path) as store:
        with pytest.raises(StoreError, match="nested transaction block failed"):
            with store.transaction():
                store.classifications.add([make_row(1)])
                try:
                    with store.transaction():
                        store.classifications.add([make_row(2)])
                        raise ValueError("inner")
                except ValueError:
                    pass
        assert store.classifications.newest().empty


def test_invalid_row_stores_nothing(db_path: Path) -> None:
    with open_store(db_path) as store:
        good = make_row(1)
        with pytest.raises(ValueError, match="emotion_probs must have 7 values"):
            store.classifications.add([good, {**good.__dict__, "emotion_probs": [0.5, 0.5]}])
        with pytest.raises(ValueError, match="emotion 'joy' is not one of"):
            store.classifications.add([{**good.__dict__, "emotion": "joy"}])
        assert store.classifications.newest().empty


def test_threads_writing_through_one_store(db_path: Path) -> None:
    threads_count, rows_per_thread = 6, 10
    errors: list[BaseException] = []
    ids_by_thread: dict[int, list[int]] = {}

    with open_store(db_path) as store:

        def writer(thread_index: int) -> None:
            try:
                ids: list[int] = []
                for row_index in range(rows_per_thread):
                    ids += store.classifications.add([make_row(thread_index * 1000 + row_index)])
                    store.classifications.newest(limit=5)  # reads interleaved with other threads' writes
                ids_by_thread[thread_index] = ids
            except BaseException as error:  # noqa: BLE001 - surfaced by the assert below
                errors.append(error)

        threads = [threading.Thread(target=writer, args=(index,)) for index in range(threads_count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert errors == []
        all_ids = [row_id for ids in ids_by_thread.values() for row_id in ids]
        assert len(set(all_ids)) == threads_count * rows_per_thread
        stored = store.classifications.newest(limit=None)
        assert sorted(stored["id"].tolist()) == sorted(all_ids)
        # every id landed on the row its thread wrote
        for thread_index, ids in ids_by_thread.items():
            for row_index, row_id in enumerate(ids):
                expected = make_row(thread_index * 1000 + row_index)
                found = stored.loc[stored["id"] == row_id].iloc[0]
                assert found["content_sha256"] == expected.content_sha256


def test_a_failing_transaction_in_one_thread_does_not_take_another_threads_writes(db_path: Path) -> None:
    """Without the lock, thread B's insert would run inside thread A's open transaction and vanish with its rollback."""
    with open_store(db_path) as store:
        a_inside = threading.Event()
        b_done = threading.Event()

        def thread_a() -> None:
            try:
                with store.transaction():
                    store.classifications.add([make_row(1)])
                    a_inside.set()
                    b_done.wait(timeout=0.5)  # B is blocked on the lock meanwhile, so this times out
                    raise RuntimeError("A fails")
            except RuntimeError:
                pass

        seen_by_b: list[bool] = []
        errors: list[BaseException] = []

        def thread_b() -> None:
            try:
                a_inside.wait(timeout=5)
                seen_by_b.append(store.classifications.newest().empty)
                store.classifications.add([make_row(2)])
                b_done.set()
            except BaseException as error:  # noqa: BLE001 - handed to the test's thread (a thread's assert only warns)
                errors.append(error)

        a, b = threading.Thread(target=thread_a), threading.Thread(target=thread_b)
        a.start()
        b.start()
        a.join()
        b.join()
        assert errors == []
        assert seen_by_b == [True], "A's uncommitted row is invisible to other threads"
        assert store.classifications.newest()["content_sha256"].tolist() == [make_row(2).content_sha256]


# ---- files held, corrupt, read-only ----------------------------------------------------------------------------------


def test_file_held_by_another_process_raises_store_locked(db_path: Path) -> None:
    open_store(db_path).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; connection = duckdb.connect(sys.argv[1]); print('ready', flush=True); "
            "time.sleep(60)",
            str(db_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready"
        for read_only in (False, True):
            began = time.monotonic()
            with pytest.raises(StoreLocked) as caught:
                open_store(db_path, read_only=read_only, wait_s=1.0)
            assert 0.9 <= time.monotonic() - began < 5, "it waited its turn for the wait budget, then gave up"
            message = str(caught.value)
            assert str(db_path) in message
            assert f"locked by process {holder.pid}" in message
            assert caught.value.pid == holder.pid
            assert caught.value.path == db_path
    finally:
        holder.kill()
        holder.wait(timeout=10)
    with open_store(db_path) as store:  # the lock goes with the process
        assert store.schema_version == LATEST


@pytest.mark.parametrize(
    "content",
    [b"this is not a database at all\n" * 200, b""],
    ids=["text-file", "empty-file"],
)
def test_not_a_duckdb_file_raises_store_error_and_is_left_alone(db_path: Path, content: bytes) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(content)
    with pytest.raises(StoreError, match="corrupt, truncated or not a DuckDB database") as caught:
        open_store(db_path)
    assert not isinstance(caught.value, StoreLocked)
    assert str(db_path) in str(caught.value)
    assert db_path.read_bytes() == content
    # no WAL or other leftovers; <db>.lock is the store's own lock file (facecast.store.gate), kept by design
    assert sorted(p.name for p in db_path.parent.iterdir() if p.suffix != ".lock") == [db_path.name]


def test_damaged_duckdb_file_raises_store_error(db_path: Path) -> None:
    with open_store(db_path) as store:
        store.classifications.add([make_row(index) for index in range(200)])
    with db_path.open("r+b") as file:  # scribble over the first data block, after DuckDB's headers
        file.seek(3 * 4096 + 64)
        file.write(b"\xff" * 256)
    with pytest.raises(StoreError, match="corrupt"):
        open_store(db_path)


def test_read_only_store_reads_but_refuses_writes(db_path: Path) -> None:
    with pytest.raises(StoreError, match="never creates"):
        open_store(db_path, read_only=True)
    with open_store(db_path) as store:
        store.classifications.add([make_row(1)])
    with open_store(db_path, read_only=True) as store:
        assert len(store.classifications.newest()) == 1
        with pytest.raises(StoreError, match="read-only"):
            store.classifications.add([make_row(2)])


def test_closed_store_refuses_work(db_path: Path) -> None:
    store = open_store(db_path)
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        store.classifications.newest()
    with pytest.raises(StoreError, match="closed"):
        store.classifications.add([make_row(1)])


# ---- typed rows ------------------------------------------------------------------------------------------------------


def test_vectors_round_trip_as_float32(db_path: Path) -> None:
    rows = [make_row(index) for index in range(3)]
    with open_store(db_path) as store:
        ids = store.classifications.add(rows)
        assert ids == sorted(ids) and len(set(ids)) == 3

        frame = store.classifications.newest()
        assert frame["id"].tolist() == ids[::-1]  # newest first
        for column, length in (("emotion_probs", 7), ("style_probs", 4), ("action_params", 4)):
            for value in frame[column]:
                assert isinstance(value, np.ndarray) and value.dtype == np.float32 and value.shape == (length,)
        newest = frame.iloc[0]
        np.testing.assert_array_equal(newest["emotion_probs"], rows[2].emotion_probs)  # exact: float32 both ways
        np.testing.assert_array_equal(newest["action_params"], rows[2].action_params)

        found = store.classifications.find(rows[1].content_sha256, "emotion_cnn", "1")
        assert found is not None and found == rows[1] and found.id == ids[1]
        assert found.emotion_probs.dtype == np.float32
        np.testing.assert_array_equal(found.style_probs, rows[1].style_probs)
        assert found.created_at is not None


def test_find_classification_matches_model_version_and_prefers_newest(db_path: Path) -> None:
    sha = "ab" * 32
    with open_store(db_path) as store:
        assert store.classifications.find(sha, "emotion_cnn", "1") is None
        old_id, new_id = store.classifications.add([make_row(1, sha=sha), make_row(2, sha=sha)])
        [other_version_id] = store.classifications.add([make_row(3, sha=sha, model_version="2")])
        assert store.classifications.find(sha, "emotion_cnn", "1").id == new_id
        assert store.classifications.find(sha, "emotion_cnn", "2").id == other_version_id
        assert store.classifications.find(sha, "other_model", "1") is None
        assert store.classifications.newest(limit=2)["id"].tolist() == [other_version_id, new_id]


def test_mappings_are_accepted_as_rows(db_path: Path) -> None:
    row = make_row(7)
    with open_store(db_path) as store:
        [row_id] = store.classifications.add([{**row.__dict__, "id": None, "created_at": None}])
        assert store.classifications.find(row.content_sha256, row.model_name, row.model_version).id == row_id


def test_a_failed_bulk_insert_reports_its_own_error(db_path: Path) -> None:
    with open_store(db_path) as store:
        with pytest.raises(duckdb.Error, match="(?i)duplicate key|constraint"):
            with store.transaction() as tx:
                table = pa.table(
                    {
                        "content_sha256": ["a", "a"],
                        "name": ["x", "x"],
                        "size_bytes": [1, 1],
                        "duration_s": [1.0, 1.0],
                        "width": [1, 1],
                        "height": [1, 1],
                        "fps": [1.0, 1.0],
                        "codec": ["h264", "h264"],
                    }
                )
                tx.insert_arrow("clips", table)
        assert store.read_rows("SELECT count(*) FROM clips") == [(0,)]


# The shipped migrations, byte for byte: a store in the wild is at one of these versions, so none may ever change
# (add the next file instead). A new migration adds its line here.
SHIPPED_MIGRATIONS = {
    "001_images_classified.sql": "60d1ec440244ddb59cbb673da3e6b3e96ee2d716067e5508582164aad437480a",
    "002_clip_analyses.sql": "562cbb8f9724a584f2f3960afd15e1f28c441a7cc1afc81e04566518eecf01fa",
    "003_library.sql": "3734643c7275c5856ef1088e537abb1947d9eb006203a5bfe9bb3cfdcec6dd4d",
    "004_analysed_by.sql": "37411df23fc0d2c872f63bc68602c8822e458bab2e3050752b9048f8856d2fae",
}


def test_shipped_migrations_never_change() -> None:
    from facecast.store.migrations import MIGRATIONS_DIR

    found = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in MIGRATIONS_DIR.glob("*.sql")}
    for name, digest in SHIPPED_MIGRATIONS.items():
        assert found.get(name) == digest, f"{name} changed or went missing: shipped migrations are frozen"


def _schema(path: Path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(path), read_only=True) as connection:
        return {
            "columns": connection.execute(
                "SELECT table_name, column_name, data_type, is_nullable, column_default FROM duckdb_columns() "
                "WHERE database_name = current_database() ORDER BY ALL"
            ).fetchall(),
            "constraints": connection.execute(
                "SELECT table_name, constraint_type, constraint_column_names::VARCHAR FROM duckdb_constraints() "
                "WHERE database_name = current_database() ORDER BY ALL"
            ).fetchall(),
            "indexes": connection.execute(
                "SELECT index_name, table_name, expressions FROM duckdb_indexes() "
                "WHERE database_name = current_database() ORDER BY ALL"
            ).fetchall(),
            "sequences": connection.execute(
                "SELECT sequence_name FROM duckdb_sequences() WHERE database_name = current_database() ORDER BY ALL"
            ).fetchall(),
        }


def test_a_store_written_before_the_package_opens_upgrades_and_loses_nothing(tmp_path: Path, monkeypatch) -> None:
    from tests.legacy_store import MIGRATIONS_AT_4282C63, build_legacy_store

    legacy = build_legacy_store(tmp_path / "legacy.duckdb")
    # the shipped migrations up to the legacy version build exactly the schema main wrote...
    with monkeypatch.context() as patch:
        patch.setattr(store_module, "MIGRATIONS", store_module.MIGRATIONS[: len(MIGRATIONS_AT_4282C63)])
        with open_store(tmp_path / "as-shipped.duckdb"):
            pass
    assert _schema(legacy) == _schema(tmp_path / "as-shipped.duckdb"), "a shipped migration no longer builds it"
    with open_store(tmp_path / "fresh.duckdb"):
        pass

    with open_store(legacy) as store:
        assert store.schema_version == LATEST
        versions = store.applied_migrations()
        assert versions["version"].tolist() == list(range(1, LATEST + 1))
        [classified] = store.classifications.newest().to_dict("records")
        assert (classified["source_path"], classified["emotion"]) == ("/faces/grin.png", "happiness")
        assert np.allclose(classified["action_params"], [0.8, 0.6, 0.5, 0.9])
        analysis = store.analyses.find("c1", "fp1")
        assert analysis is not None and analysis.report_json == '{"clip": {"name": "cut-a.mp4"}}'
        faces = store.analyses.faces(analysis.id)
        assert len(faces) == 1 and np.allclose(faces["box"].iloc[0], [0.1, 0.1, 0.4, 0.5])
        assert store.library.count() == 2
        candidates = store.library.search_candidates([1, 2])
        assert candidates["character"].tolist() == ["Rin", None]
        assert np.isnan(candidates["params"][1]).all() and np.allclose(candidates["params"][0], [0.6, 0.7, 0.1, 0.2])
        ids, vectors = store.library.embeddings()
        assert ids.tolist() == [1, 2] and np.allclose(vectors[0, :8], [i % 7 / 7 for i in range(8)])
        assert store.feedback.for_profile("ana")["kind"].tolist() == ["selected", "skipped"]
        weights, pairs = store.feedback.weights("ana")
        assert pairs == 1 and np.allclose(weights, [0.3, 0.2, 0.2, 0.2, 0.1])
        # and it takes new rows after the upgrade, with ids after the old ones
        [new_id] = store.classifications.add([make_row(1)])
        assert new_id == 2
    # ...and upgraded, it has exactly the schema of a store created today
    assert _schema(legacy) == _schema(tmp_path / "fresh.duckdb")
