"""Ingest and search through a real Triton serving the three embedders, a real DuckDB file and a real FAISS index:
the library API, the CLI, and the bad inputs of issue 4."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facecast.clients.embedders import Embedders
from facecast.config import PROJECT_ROOT
from facecast.library import Filters, Library, LibraryError, Query, QueryError
from facecast.library.ingest import add_from_analysis
from facecast.library.ranking import TERMS
from facecast.serving import process
from facecast.serving.errors import TritonUnavailable
from facecast.store import open_store
from facecast.vocab import EMOTIONS, STYLES

WEIGHTS = [PROJECT_ROOT / "weights" / f"{name}-cpu.pt" for name in ("image_embedder", "text_embedder", "query_fuser")]
HELD_OUT = [f"c{i:05d}" for i in range(1300, 1500)]


@pytest.fixture(scope="session")
def embedder_url(full_server) -> str:
    """The shared real Triton (tests/conftest.py) serving image_embedder, text_embedder and query_fuser."""
    return full_server.triton_url


@pytest.fixture(scope="session")
def faces(tmp_path_factory) -> Path:
    """A folder of 160 held-out-character stills (PNG) and labels.csv in the manifest format."""
    from training.data.synthetic import sample_still

    folder = tmp_path_factory.mktemp("faces")
    rows = []
    for i in range(160):
        seed = 77 * 1_000_003 + i
        # 8 characters, every style and emotion: enough items per (emotion, style) to rank
        image, labels = sample_still(
            seed, style=STYLES[i % 4], emotion=EMOTIONS[(i // 4) % 7], character_id=HELD_OUT[i % 8]
        )
        image.save(folder / f"face_{i:03d}.png")
        rows.append({"path": f"face_{i:03d}.png", **labels})
    pd.DataFrame(rows).to_csv(folder / "labels.csv", index=False)
    return folder


@pytest.fixture(scope="session")
def embedders(embedder_url) -> Embedders:
    return Embedders.for_urls(embedder_url)


@pytest.fixture(scope="session")
def shared_library(tmp_path_factory, faces, embedders) -> Library:
    library = Library.open(tmp_path_factory.mktemp("lib") / "library.duckdb", embedders=embedders)
    report = library.add_images([faces], labels=faces / "labels.csv")
    assert len(report.added) == 160 and not report.failed
    yield library
    library.close()


# ---- ingest ----------------------------------------------------------------------------------------------------------


def test_ingest_reports_bad_files_by_name_and_stores_the_rest_once(tmp_path, faces, embedders):
    folder = tmp_path / "incoming"
    folder.mkdir()
    for name in ("face_000.png", "face_001.png", "face_002.png"):
        shutil.copy(faces / name, folder / name)
    shutil.copy(faces / "face_000.png", folder / "copy_of_000.png")
    (folder / "notes.png").write_text("this is not an image")
    (folder / "truncated.png").write_bytes((faces / "face_003.png").read_bytes()[:200])
    with Library.open(tmp_path / "lib.duckdb", embedders=embedders) as library:
        report = library.add_images([folder])
        assert len(report.added) == 3
        assert {Path(p).name for p, _ in report.failed} == {"notes.png", "truncated.png"}
        assert all("Traceback" not in why and why for _, why in report.failed)
        assert [Path(p).name for p, _ in report.duplicates] == ["face_000.png"] or [
            Path(p).name for p, _ in report.duplicates
        ] == ["copy_of_000.png"]
        again = library.add_images([folder / "face_001.png"])
        assert (
            again.added == []
            and again.duplicates[0][1] == report.added[[Path(p).name for _, p in report.added].index("face_001.png")][0]
        )
        assert library.store.library.count() == 3 and len(library.index) == 3
        items = library.store.library.items(limit=None)
        assert not items["labelled"].any()  # no labels: the embedder's heads named emotion and style
        assert set(items["emotion"]) <= set(EMOTIONS) and set(items["style"]) <= set(STYLES)
        thumbnail = Image.open(io.BytesIO(library.store.library.thumbnail(int(items["id"].iloc[0]))))
        assert thumbnail.format == "PNG" and thumbnail.size == (64, 64)


def test_labels_override_the_heads(shared_library, faces):
    labels = pd.read_csv(faces / "labels.csv")
    items = shared_library.store.library.items(limit=None)
    items["name"] = [Path(p).name for p in items["source_path"]]
    merged = items.merge(labels, left_on="name", right_on="path", suffixes=("", "_label"))
    assert len(merged) == 160 and merged["labelled"].all()
    assert (merged["emotion"] == merged["emotion_label"]).all() and (merged["style"] == merged["style_label"]).all()
    assert (merged["character"] == merged["character_label"]).all()


# ---- search ----------------------------------------------------------------------------------------------------------


def test_text_search_ranks_the_asked_emotion_and_style_first(shared_library):
    results = shared_library.search(Query(text="a furious character in anime style"), top_k=5)
    assert results.query_type == "text" and len(results.results) == 5
    hits = sum(r.emotion == "anger" and r.style == "anime" for r in results.results)
    assert hits >= 4, [(r.emotion, r.style) for r in results.results]
    top = results.results[0]
    assert set(top.phi) == set(TERMS) and all(0 <= v <= 1 for v in top.phi.values())
    assert abs(sum(top.phi[t] * top.weights[t] for t in TERMS) - top.score) < 1e-5
    assert [r.score for r in results.results] == sorted((r.score for r in results.results), reverse=True)


def test_image_emotion_style_and_mixed_queries(shared_library, faces):
    reference = faces / "face_004.png"
    labels = pd.read_csv(faces / "labels.csv").set_index("path").loc["face_004.png"]
    by_image = shared_library.search(Query(image=reference), top_k=10)
    assert by_image.query_type == "image"
    assert sum(r.emotion == labels["emotion"] for r in by_image.results) >= 7
    by_emotion = shared_library.search(Query(emotion="surprise"), top_k=10)
    assert all(r.emotion == "surprise" for r in by_emotion.results)
    by_style = shared_library.search(Query(style="cartoon"), top_k=10)
    assert all(r.style == "cartoon" for r in by_style.results)
    angrier = shared_library.search(Query(image=reference, emotion="anger"), top_k=10)
    assert angrier.query_type == "mixed"
    assert sum(r.emotion == "anger" for r in angrier.results) >= 8
    assert sum(r.style == labels["style"] for r in angrier.results) >= 5


def test_selective_filters_fall_back_to_exact_search(shared_library):
    character = HELD_OUT[3]
    wanted = shared_library.store.library.filtered_count(character=character, emotion="fear")
    assert 0 < wanted < 10
    results = shared_library.search(
        Query(text="a happy cartoon face"),
        top_k=10,
        filters=Filters(character=character, emotion="fear"),
        candidates=20,
    )
    assert results.exact and any("exactly" in note for note in results.notes)
    assert len(results.results) == wanted
    assert all(r.character == character and r.emotion == "fear" for r in results.results)


def test_bad_queries_get_clear_errors_or_notes(shared_library):
    with pytest.raises(QueryError, match="empty"):
        shared_library.search(Query(text="   "))
    with pytest.raises(QueryError, match="empty query"):
        shared_library.search(Query())
    with pytest.raises(QueryError, match="unknown emotion 'smug'"):
        shared_library.search(Query(emotion="smug"))
    with pytest.raises(QueryError, match="query image"):
        shared_library.search(Query(image=b"definitely not a picture"))
    long = shared_library.search(Query(text="a sad anime face " * 600), top_k=5)  # about 10 kB
    assert any("only the first 1000" in note for note in long.notes) and len(long.results) == 5
    before = shared_library.store.library.count()
    hostile = "'; DROP TABLE library_items; -- \" OR 1=1 /*"
    odd = shared_library.search(Query(text=hostile), top_k=5, filters=Filters(character=hostile))
    assert odd.results == [] and shared_library.store.library.count() == before
    assert len(shared_library.search(Query(text=hostile), top_k=5).results) == 5


def test_feedback_changes_the_ranking_for_that_user_only(shared_library):
    query = Query(text="a happy face")
    profile = "test:likes-stylized-3d"
    for _ in range(6):
        shown = shared_library.search(query, top_k=10, profile=profile)
        picks = [r.id for r in shown.results if r.style == "stylized_3d"][:2]
        others = shared_library.search(Query(text="a sad face"), top_k=10, profile=profile)
        shared_library.record_selection(profile, shown, picks)
        shared_library.record_selection(profile, others, [r.id for r in others.results if r.style == "stylized_3d"][:2])
    after = shared_library.search(Query(text="a surprised face"), top_k=10, profile=profile)
    default = shared_library.search(Query(text="a surprised face"), top_k=10)
    liked_after = sum(r.style == "stylized_3d" for r in after.results)
    assert liked_after > sum(r.style == "stylized_3d" for r in default.results)
    assert after.weights["user_preference"] > default.weights["user_preference"]
    rows = shared_library.store.feedback.for_profile(profile)
    assert set(rows["kind"]) == {"selected", "skipped"} and len(rows) == 120


def test_expressions_from_an_analysed_clip(tmp_path, faces, embedders):
    from facecast.clips.pipeline import analysis_record
    from facecast.clips.report import CharacterSummary, ClipInfo, EngagementReport, KeyMoment, Scored
    from facecast.clips.scoring import Observation

    def thumbnail(name: str) -> str:
        return base64.b64encode((faces / name).read_bytes()).decode("ascii")

    probs = np.eye(7, dtype=np.float32)
    report = EngagementReport(
        clip=ClipInfo("scene.mp4", "f" * 64, 1000, 4.0, 320, 240, 24.0, "h264"),
        faces_found=True,
        engagement=Scored(0.5, 0.4, 0.6),
        characters=[
            CharacterSummary(1, 0.0, 4.0, 8, 4.0, "anger", "anime", 0.3),
            CharacterSummary(2, 0.0, 4.0, 8, 4.0, "happiness", "cartoon", 0.3),
        ],
        key_moments=[
            KeyMoment(1.0, 0.4, 1, "anger", 0.9, thumbnail("face_010.png")),
            KeyMoment(2.5, 0.3, 2, "happiness", 0.8, thumbnail("face_011.png")),
            KeyMoment(3.0, 0.3, 2, "happiness", 0.8, thumbnail("face_011.png")),
        ],
    )
    observations = [
        Observation(
            t,
            track,
            (0.1, 0.1, 0.4, 0.5),
            0.9,
            probs[2 if track == 1 else 0],
            np.eye(4, dtype=np.float32)[2 if track == 1 else 1],
            np.array([0.2, 0.3, 0.4, 0.5 + t / 10], np.float32),
        )
        for t in (0.5, 1.0, 2.5, 3.0)
        for track in (1, 2)
    ]
    with open_store(tmp_path / "lib.duckdb") as store:
        analysis_id = store.analyses.add(analysis_record(report, observations, "fingerprint"))
        with pytest.raises(LibraryError, match="no clip analysis 999"):
            add_from_analysis(store, 999, embedders=embedders)
        result = add_from_analysis(store, analysis_id, embedders=embedders)
        assert len(result.added) == 2 and len(result.duplicates) == 1  # the third moment repeats a thumbnail
        items = store.library.items(limit=None).sort_values("id")
        assert list(items["emotion"]) == ["anger", "happiness"] and list(items["style"]) == ["anime", "cartoon"]
        assert list(items["character"]) == ["scene.mp4#1", "scene.mp4#2"]
        assert np.allclose(items["params"].iloc[0], [0.2, 0.3, 0.4, 0.6])
    with Library.open(tmp_path / "lib.duckdb", embedders=embedders) as library:
        # the store-only ingest never wrote an index: the library builds it from DuckDB and says so
        assert any("rebuilt the vector index" in note for note in library.notes) and len(library.index) == 2
        again = library.add_from_analysis(analysis_id)
        assert again.added == [] and len(again.duplicates) == 3


# ---- CLI -------------------------------------------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "facecast", *args], capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT
    )


def test_cli_library_and_search(tmp_path, faces, embedder_url):
    db = str(tmp_path / "cli.duckdb")
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(0, 160, 2):
        shutil.copy(faces / f"face_{i:03d}.png", folder)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    added = _cli(
        "library", "add", str(folder), "--labels", str(faces / "labels.csv"), "--db", db, "--url", embedder_url
    )
    assert added.returncode == 4, added.stderr  # partial: one file failed
    assert "broken.png: " in added.stderr and "added 80 item(s)" in added.stdout
    assert "facecast library add: error: " in added.stderr
    again = _cli("library", "add", str(folder / "face_000.png"), "--db", db, "--url", embedder_url)
    assert again.returncode == 0 and "already in the library" in again.stdout

    stats = json.loads(_cli("library", "stats", "--db", db, "--json").stdout)
    assert stats["items"] == 80 and stats["index"]["vectors"] == 80

    found = _cli(
        "search",
        "--text",
        "an angry face",
        "--style",
        "anime",
        "--top",
        "5",
        "--json",
        "--db",
        db,
        "--url",
        embedder_url,
    )
    assert found.returncode == 0, found.stderr
    document = json.loads(found.stdout)
    assert len(document["results"]) == 5 and all(r["style"] == "anime" for r in document["results"])
    assert set(document["results"][0]["explanation"]) == set(TERMS)
    table = _cli(
        "search",
        "--emotion",
        "fear",
        "--db",
        db,
        "--url",
        embedder_url,
        "--user",
        "kim",
        "--select",
        str(document["results"][0]["id"]),
    )
    assert table.returncode == 2 and "were not among the shown results" in table.stderr  # it was an anger result
    plain = _cli("search", "--emotion", "fear", "--top", "3", "--db", db, "--url", embedder_url)
    assert plain.returncode == 0 and plain.stdout.count("fear") >= 3

    first = str(document["results"][0]["id"])
    removed = _cli("library", "remove", first, "999999", "--db", db)
    assert removed.returncode == 4 and "removed 1 item(s)" in removed.stdout and "no item 999999" in removed.stderr
    Path(db + ".faiss").unlink()
    rebuilt = _cli("library", "stats", "--db", db)
    assert rebuilt.returncode == 0 and "rebuilt the vector index" in rebuilt.stderr and "79 items" in rebuilt.stdout
    empty = _cli("search", "--text", "", "--db", db, "--url", embedder_url)
    assert empty.returncode == 2 and "empty" in empty.stderr and "Traceback" not in empty.stderr


def test_triton_down_is_a_clear_message(tmp_path, faces):
    port = process.find_free_ports(1)[0]
    db = str(tmp_path / "down.duckdb")
    for args in (("search", "--text", "a happy face"), ("library", "add", str(faces / "face_000.png"))):
        result = _cli(*args, "--db", db, "--url", f"127.0.0.1:{port}")
        assert result.returncode == 1
        assert "Triton is not reachable" in result.stderr and "Traceback" not in result.stderr
    with pytest.raises(TritonUnavailable, match="facecast serve"):
        with Library.open(db, urls=f"127.0.0.1:{port}") as library:
            library.search(Query(text="a happy face"))
