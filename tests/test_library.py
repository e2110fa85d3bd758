"""The library's storage half without a model server: DuckDB rows (migration 3), the FAISS index checked against
them, the ranking terms and the feedback learner. Vectors are random unit vectors; files are real DuckDB and FAISS
files on disk. (Ingest and search through the served embedders: tests/test_search.py.)"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from facecast.library import LabelsError, Library, feedback, read_labels
from facecast.library.ranking import DEFAULT_WEIGHTS, TERMS, RankingContext, phi_matrix, rerank
from facecast.library.vector_index import VectorIndex, index_paths, open_index
from facecast.store import EMBEDDING_DIM, LibraryItem, StoreError, StoreLocked, open_store
from facecast.vocab import EMOTIONS, STYLES


def _unit(rng: np.random.Generator, count: int) -> np.ndarray:
    vectors = rng.normal(size=(count, EMBEDDING_DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _items(rng: np.random.Generator, count: int, start: int = 0, **fixed) -> list[LibraryItem]:
    vectors = _unit(rng, count)
    items = []
    for i in range(count):
        emotion = fixed.get("emotion", EMOTIONS[(start + i) % len(EMOTIONS)])
        style = fixed.get("style", STYLES[(start + i) % len(STYLES)])
        items.append(
            LibraryItem(
                content_sha256=f"sha-{start + i}",
                source="test",
                source_path=f"faces/{start + i}.png",
                emotion=emotion,
                style=style,
                emotion_probs=np.eye(7)[EMOTIONS.index(emotion)],
                style_probs=np.eye(4)[STYLES.index(style)],
                embedding=vectors[i],
                thumbnail=b"\x89PNG fake bytes are fine for the store",
                labelled=True,
                character=fixed.get("character", f"c{(start + i) % 5}"),
                intensity=0.3 + 0.6 * ((start + i) % 3) / 2,
                params=np.full(4, 0.5, np.float32),
            )
        )
    return items


@pytest.fixture
def library(tmp_path) -> Library:
    rng = np.random.default_rng(7)
    lib = Library(open_store(tmp_path / "library.duckdb"))
    lib.add_items(_items(rng, 300))
    yield lib
    lib.close()


# ---- store -----------------------------------------------------------------------------------------------------------


def test_migration_3_tables_and_duplicate_content_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    with open_store(tmp_path / "s.duckdb") as store:
        assert store.schema_version >= 3
        ids = store.library.add(_items(rng, 3))
        assert store.library.ids_by_hash(["sha-1", "nope"]) == {"sha-1": ids[1]}
        with pytest.raises(StoreError, match="already in the library"):
            store.library.add(_items(rng, 1, start=1))  # same content hash as item 2
        assert store.library.count() == 3  # the failed batch left nothing behind


def test_sql_looking_values_are_parameters_not_sql(library):
    hostile = "x' OR '1'='1'; DROP TABLE library_items; --"
    rows = library.store.library.search_candidates(None, character=hostile)
    assert len(rows["id"]) == 0
    assert library.store.library.filtered_count(character=hostile) == 0
    first = int(library.store.library.ids()[0])
    assert library.update_labels(first, character='O\'Brien "the quoted"')
    assert library.store.library.items([first])["character"].iloc[0] == 'O\'Brien "the quoted"'
    assert library.store.library.count() == 300


def test_update_labels_sets_one_hot_distributions(library):
    first = int(library.store.library.ids()[0])
    assert library.update_labels(first, emotion="fear", style="anime")
    rows = library.store.library.search_candidates([first])
    assert rows["emotion"][0] == "fear" and rows["style"][0] == "anime"
    assert rows["emotion_probs"][0].argmax() == EMOTIONS.index("fear") and rows["style_probs"][0].max() == 1.0
    assert not library.update_labels(10**9, emotion="fear")
    with pytest.raises(ValueError, match="not one of"):
        library.update_labels(first, emotion="smug")


# ---- vector index ----------------------------------------------------------------------------------------------------


def test_hnsw_recall_against_exact_search():
    rng = np.random.default_rng(1)
    # clustered like real embeddings (uniformly random 512-d vectors have no meaningful neighbours)
    vectors = _unit(rng, 50)[rng.integers(0, 50, 5000)] + 0.04 * rng.normal(size=(5000, EMBEDDING_DIM))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    index = VectorIndex.build(np.arange(5000) + 1, vectors)
    queries = vectors[rng.choice(5000, 50, replace=False)] + 0.02 * rng.normal(size=(50, EMBEDDING_DIM))
    found, _ = index.search(queries.astype(np.float32), 10)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10] + 1
    recall = np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact)])
    assert recall >= 0.98


def test_index_persists_and_removed_ids_never_come_back(library, tmp_path):
    ids = library.store.library.ids()
    _, vectors = library.store.library.embeddings(ids[:1].tolist())
    removed, unknown = library.remove([int(ids[0]), 10**9])
    assert removed == [int(ids[0])] and unknown == [10**9]
    found, _ = library.index.search(vectors, 5)
    assert int(ids[0]) not in found[0]
    library.close()
    reopened = Library(open_store(tmp_path / "library.duckdb"))
    assert reopened.notes == []  # consistent pair on disk: nothing to repair
    assert int(ids[0]) not in reopened.index.search(vectors, 5)[0][0]
    assert len(reopened.index) == 299
    reopened.close()


def test_missing_index_is_rebuilt_and_said_so(library, tmp_path):
    library.close()
    index_file, _ = index_paths(tmp_path / "library.duckdb")
    index_file.unlink()
    reopened = Library(open_store(tmp_path / "library.duckdb"))
    assert any("missing" in note and "rebuilt" in note for note in reopened.notes)
    assert len(reopened.index) == 300
    reopened.close()


def test_corrupt_index_file_is_rebuilt(library, tmp_path):
    library.close()
    index_file, _ = index_paths(tmp_path / "library.duckdb")
    index_file.write_bytes(b"\x00garbage" * 100)
    reopened = Library(open_store(tmp_path / "library.duckdb"))
    assert any("unreadable" in note and "rebuilt" in note for note in reopened.notes)
    assert len(reopened.index) == 300
    reopened.close()


def test_stale_index_catches_up_with_rows_added_behind_its_back(library, tmp_path):
    rng = np.random.default_rng(3)
    new_ids = library.store.library.add(_items(rng, 20, start=1000))  # store only: the index did not see them
    library.store.library.remove([int(library.store.library.ids()[0])])
    notes: list[str] = []
    paths = index_paths(library.store.path)
    index = open_index(library.store, *paths, EMBEDDING_DIM, notes)
    assert any("stale (20 items missing, 1 deleted" in note for note in notes)
    assert set(index.live_ids().tolist()) == set(library.store.library.ids().tolist())
    _, vectors = library.store.library.embeddings(new_ids[:1])
    assert index.search(vectors, 1)[0][0][0] == new_ids[0]


def test_vectors_that_disagree_with_duckdb_trigger_a_rebuild(tmp_path):
    rng = np.random.default_rng(4)
    with open_store(tmp_path / "small.duckdb") as store:
        Library(store).add_items(_items(rng, 6))
        other = _unit(rng, 1)[0]
        with store.transaction() as tx:  # a vector changed without the index knowing
            tx.execute(
                f"UPDATE library_items SET embedding = ?::FLOAT[{EMBEDDING_DIM}] WHERE id = ?",
                [other.tolist(), int(store.library.ids()[2])],
            )
        notes: list[str] = []
        index = open_index(store, *index_paths(store.path), EMBEDDING_DIM, notes)
        assert any("disagree" in note for note in notes)
        assert np.allclose(index.reconstruct([int(store.library.ids()[2])])[0], other, atol=1e-6)


def test_a_library_file_kept_open_by_another_program_says_so(tmp_path, monkeypatch):
    """facecast processes take turns on the file; a program that keeps it open (here a DuckDB connection that
    sleeps) is waited for FACECAST_STORE_WAIT_S, then named."""
    monkeypatch.setenv("FACECAST_STORE_WAIT_S", "1")
    path = tmp_path / "locked.duckdb"
    open_store(path).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import time, duckdb
        connection = duckdb.connect({str(path)!r})
        print("holding", flush=True)
        time.sleep(30)
    """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(StoreLocked, match=f"locked by process {holder.pid}"):
            Library.open(path)
        cli = subprocess.run(
            [sys.executable, "-m", "facecast", "library", "stats", "--db", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert cli.returncode == 1 and "is locked by process" in cli.stderr and "Traceback" not in cli.stderr
    finally:
        holder.kill()
        holder.wait()


# ---- labels ----------------------------------------------------------------------------------------------------------


def test_labels_csv_errors_name_file_row_and_problem(tmp_path):
    bad = tmp_path / "labels.csv"
    bad.write_text("path,emotion\na.png,happiness\nb.png,smug\n")
    with pytest.raises(LabelsError, match=r"labels.csv: row 3: emotion 'smug'"):
        read_labels(bad)
    bad.write_text("file,emotion\na.png,happiness\n")
    with pytest.raises(LabelsError, match="needs a 'path' column"):
        read_labels(bad)
    bad.write_text("path,emotion,intensity\na.png,anger,1.7\n")
    with pytest.raises(LabelsError, match="intensity='1.7'"):
        read_labels(bad)
    with pytest.raises(LabelsError, match="not found"):
        read_labels(tmp_path / "absent.csv")


def test_a_manifest_too_long_or_too_large_is_refused_before_parsing(tmp_path):
    long = tmp_path / "million.csv"
    long.write_text("path\n" + "a.png\n" * 1_000_000)  # 6 MB: under the byte limit, over the row limit
    with pytest.raises(LabelsError, match=r"million.csv: more than 100,000 rows"):
        read_labels(long)
    large = tmp_path / "large.csv"
    large.write_text("path,character\n" + f"a.png,{'x' * 9_000_000}\n")
    with pytest.raises(LabelsError, match=r"large.csv: the file is too large \(9.0 MB"):
        read_labels(large)


# ---- ranking and feedback --------------------------------------------------------------------------------------------


def _candidates(count: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    emotions = rng.integers(0, 7, count)
    styles = rng.integers(0, 4, count)
    return {
        "id": np.arange(count),
        "emotion_probs": np.eye(7, dtype=np.float32)[emotions],
        "style_probs": np.eye(4, dtype=np.float32)[styles],
        "character": np.array([f"c{i % 3}" for i in range(count)], object),
        "style": np.array([STYLES[s] for s in styles], object),
        "intensity": rng.uniform(0, 1, count),
    }


def test_phi_values_are_in_unit_range_and_neutral_terms_do_not_reorder():
    rng = np.random.default_rng(5)
    rows = _candidates(50, rng)
    similarity = rng.uniform(-0.2, 0.9, 50)
    context = RankingContext(vector=_unit(rng, 1)[0], emotion=np.eye(7)[2], style=None)
    phi = phi_matrix(context, rows, similarity)
    assert phi.shape == (50, len(TERMS)) and phi.min() >= 0 and phi.max() <= 1
    assert np.all(phi[:, 1] == 0.5) and np.all(phi[:, 3] == 0.5) and np.all(phi[:, 4] == 0.5)
    order, scores = rerank(phi, DEFAULT_WEIGHTS, similarity)
    anger = rows["emotion_probs"][:, 2] == 1
    assert anger[order[: anger.sum()]].all()  # every anger item first: emotional similarity dominates
    assert np.all(np.diff(scores[order]) <= 1e-6)
    with_character = phi_matrix(RankingContext(context.vector, character="c1"), rows, similarity)
    assert set(with_character[:, 3]) == {0.0, 1.0}


def test_weight_learner_moves_weight_to_the_term_that_separates_choices():
    rng = np.random.default_rng(6)
    differences = rng.normal(0, 0.05, size=(400, len(TERMS)))
    differences[:, 4] = np.abs(differences[:, 4]) + 0.2  # chosen items always score higher on user preference
    learned = feedback.learn_weights(differences)
    assert learned[4] > 0.3 > DEFAULT_WEIGHTS[4]
    assert abs(learned.sum() - 1) < 1e-5
    assert np.all(learned >= feedback.MIN_WEIGHTS - 1e-6) and np.all(learned <= feedback.MAX_WEIGHTS + 1e-6)
    assert np.allclose(feedback.learn_weights(np.zeros((0, len(TERMS)))), DEFAULT_WEIGHTS)


def test_feedback_is_stored_and_preference_learned_per_profile(library):
    store = library.store
    rows = store.library.search_candidates(None)
    ann_likes = rows["id"][rows["style"] == "anime"][:30].tolist()
    other = rows["id"][rows["style"] != "anime"][:60].tolist()
    for round_ in range(10):
        shown = ann_likes[3 * round_ : 3 * round_ + 3] + other[6 * round_ : 6 * round_ + 6]
        store.feedback.add(
            "ann",
            f"q{round_}",
            [
                {
                    "item_id": i,
                    "kind": "selected" if i in ann_likes else "skipped",
                    "rank": r + 1,
                    "phi": [0.5] * len(TERMS),
                }
                for r, i in enumerate(shown)
            ],
        )
    weights, preference = feedback.update_profile(store, "ann")
    assert preference.rates["style"]["anime"] > 0.9
    assert preference.rates["style"]["cartoon"] < 0.1
    assert weights[TERMS.index("user_preference")] > DEFAULT_WEIGHTS[TERMS.index("user_preference")]
    assert np.allclose(store.feedback.weights("ann")[0], weights)
    assert store.feedback.weights("bob") is None
    assert np.allclose(feedback.load_profile(store, "bob")[0], DEFAULT_WEIGHTS)
    with pytest.raises(ValueError, match="kind"):
        store.feedback.add("ann", "q", [{"item_id": 1, "kind": "liked", "phi": [0.5] * 5}])


def test_remove_many_compacts_the_index(library):
    ids = library.store.library.ids()
    started = time.perf_counter()
    library.remove(ids[:100].tolist())
    assert library.index.tombstones == set() and len(library.index) == 200  # > 20 % removed: rebuilt
    assert time.perf_counter() - started < 30


def test_sessions_of_one_process_write_and_search_one_library_at_once(library, tmp_path):
    """The app shares one Library across browser sessions: adds, removals and searches from several threads at once
    leave a store and an index that agree (FAISS is not thread-safe; index saves must not collide)."""
    import threading

    rng = np.random.default_rng(11)
    batches = [_items(rng, 5, start=1000 + 10 * b) for b in range(40)]
    errors: list[BaseException] = []

    def write(batch_numbers: range) -> None:
        try:
            for b in batch_numbers:
                library.add_items(batches[b])
                if b % 4 == 0:
                    library.remove([int(library.store.library.ids()[0])])
        except BaseException as error:  # noqa: BLE001 - handed to the test's thread
            errors.append(error)

    def search() -> None:
        try:
            for vector in _unit(rng, 60):
                with library.index_lock:
                    library.index.search(vector, 10)
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=write, args=(range(i, 40, 4),)) for i in range(4)]
    threads.append(threading.Thread(target=search))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    db_ids = np.sort(library.store.library.ids())
    assert np.array_equal(np.sort(library.index.live_ids()), db_ids)
    index_path, sidecar_path = index_paths(library.store.path)
    reloaded = VectorIndex.load(index_path, sidecar_path, EMBEDDING_DIM)  # the saved pair is whole
    assert np.array_equal(np.sort(reloaded.live_ids()), db_ids)
    assert not list(index_path.parent.glob(".*.tmp")), "no temporary file left behind"


def test_a_library_follows_what_another_process_wrote(tmp_path):
    """The FAISS index is a cache of DuckDB: rows another process adds or removes show up in this process's
    searches without reopening."""
    rng = np.random.default_rng(5)
    path = tmp_path / "shared.duckdb"
    mine = Library(open_store(path))
    mine.add_items(_items(rng, 20))
    other_items = _items(rng, 10, start=500)
    script = textwrap.dedent(f"""
        import pickle, sys
        from facecast.library import Library
        from facecast.store import open_store
        items = pickle.loads(sys.stdin.buffer.read())
        other = Library(open_store({str(path)!r}))
        other.add_items(items)
        other.remove([1, 2])
    """)
    import pickle

    done = subprocess.run(
        [sys.executable, "-c", script], input=pickle.dumps(other_items), capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode()
    mine.follow_store()
    assert np.array_equal(np.sort(mine.index.live_ids()), np.sort(mine.store.library.ids()))
    assert 1 not in set(mine.index.live_ids().tolist()) and len(mine.index) == 28
    with mine.index_lock:
        ids, _ = mine.index.search(other_items[3].embedding, 1)
    digest = other_items[3].content_sha256
    assert int(ids[0][0]) == mine.store.library.ids_by_hash([digest])[digest]
    mine.close()


# ---- candidate rows in memory (facecast.library.candidate_rows) ----------------------------------------------------


def _same_rows(cached: dict, stored: dict) -> None:
    assert set(cached) == set(stored)
    for name, values in stored.items():
        if np.asarray(values).dtype.kind == "f":
            np.testing.assert_array_equal(cached[name], values, err_msg=name)
        else:
            assert list(cached[name]) == list(values), name


def test_candidate_rows_from_memory_match_duckdb_with_and_without_filters(library):
    ids = library.store.library.ids()
    with library.store.transaction() as tx:  # unknown character, intensity and params must come back as such
        tx.execute(
            "UPDATE library_items SET character = NULL, intensity = NULL, params = NULL WHERE id = ?", [int(ids[3])]
        )
    wanted = np.concatenate([ids[::7], [10_000_000]])  # an id the store does not have is left out, as DuckDB does
    library.rows.refresh()
    for filters in ({}, {"emotion": "anger"}, {"style": "anime", "character": "c2"}, {"character": "nobody"}):
        _same_rows(
            library.rows.candidates(wanted[::-1], **filters), library.store.library.search_candidates(wanted, **filters)
        )


def test_candidate_rows_follow_labels_removals_and_raw_updates_in_this_process(library):
    library.rows.refresh()
    item = int(library.store.library.ids()[0])
    assert library.update_labels(item, emotion="fear", character="hero")
    library.rows.refresh()
    row = library.rows.candidates([item])
    assert row["emotion"].tolist() == ["fear"] and row["character"].tolist() == ["hero"]
    assert row["emotion_probs"][0].tolist() == [float(e == "fear") for e in EMOTIONS]
    with library.store.transaction() as tx:  # a writer that does not touch updated_at is noticed too
        tx.execute("UPDATE library_items SET source_path = 'moved.png' WHERE id = ?", [item])
    library.remove([int(library.store.library.ids()[1])])
    library.rows.refresh()
    assert library.rows.candidates([item])["source_path"].tolist() == ["moved.png"]
    assert len(library.rows) == library.store.library.count() == 299


def test_candidate_rows_ask_duckdb_only_after_a_write(library):
    library.rows.refresh()
    asked = library.rows.refreshes
    for _ in range(3):
        library.rows.refresh()
    assert library.rows.refreshes == asked
    library.store.feedback  # noqa: B018 - reading changes nothing
    library.add_items(_items(np.random.default_rng(3), 2, start=900))
    library.rows.refresh()
    assert library.rows.refreshes == asked + 1 and len(library.rows) == 302


def test_another_process_ingest_and_removal_reach_this_process_search_rows(tmp_path):
    """Two processes on one store: what the other adds, relabels and removes is in this one's next candidates
    (read from memory, not from DuckDB), without reopening."""
    import pickle

    rng = np.random.default_rng(9)
    path = tmp_path / "shared.duckdb"
    mine = Library(open_store(path))
    mine.add_items(_items(rng, 20))
    mine.rows.refresh()
    before = mine.rows.refreshes
    other_items = _items(rng, 10, start=500, emotion="disgust")
    script = textwrap.dedent(f"""
        import pickle, sys
        from facecast.library import Library
        from facecast.store import open_store
        items = pickle.loads(sys.stdin.buffer.read())
        other = Library(open_store({str(path)!r}))
        other.add_items(items)
        other.update_labels(4, style="anime", character="villain")
        other.remove([1, 2])
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], input=pickle.dumps(other_items), capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode()
    all_ids = list(range(1, 40))
    mine.rows.refresh()
    rows = mine.rows.candidates(all_ids)
    assert mine.rows.refreshes == before + 1
    assert rows["id"].tolist() == mine.store.library.ids().tolist() and 1 not in rows["id"].tolist()
    theirs = set(mine.store.library.ids_by_hash([item.content_sha256 for item in other_items]).values())
    assert len(theirs) == 10 and {e for i, e in zip(rows["id"], rows["emotion"]) if i in theirs} == {"disgust"}
    relabelled = mine.rows.candidates([4])
    assert relabelled["style"].tolist() == ["anime"] and relabelled["character"].tolist() == ["villain"]
    _same_rows(rows, mine.store.library.search_candidates(all_ids))
    mine.close()
