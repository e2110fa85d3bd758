"""The Streamlit pages, run headless with AppTest against a real Triton (and with Triton down)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from facecast.clients.expression_encoder import ExpressionRecognizer
from facecast.clips.report import EngagementReport
from facecast.clips.report_html import report_html
from facecast.config import PROJECT_ROOT, Settings
from facecast.media.images import load_face
from facecast.serving import process
from facecast.serving.client import TritonModelClient
from facecast.vocab import EXPRESSION_ENCODER
from tests.clipmaker import emoji_over_photo
from tests.conftest import ALL_MODELS, settings_environment
from training.data.demo import build_demo, build_demo_style_sets

pytestmark = pytest.mark.triton
APP = PROJECT_ROOT / "app"


@pytest.fixture
def app_env(monkeypatch, tmp_path):
    """Point the app's settings somewhere (a fresh DuckDB per test) and drop cached resources."""

    def apply(settings: Settings, db=None) -> None:
        for key, value in settings_environment(settings).items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("FACECAST_DEMO_DIR", str(tmp_path / "demo"))
        monkeypatch.setenv("FACECAST_DB", str(db or tmp_path / "app.duckdb"))
        st.cache_resource.clear()

    yield apply
    st.cache_resource.clear()


@pytest.fixture
def triton_down(tmp_path) -> Settings:
    (port,) = process.find_free_ports(1)
    return Settings().with_overrides(http_port=port, run_dir=tmp_path / "run", db_path=tmp_path / "down.duckdb")


@pytest.fixture(scope="module")
def cuts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cuts")
    return [
        emoji_over_photo(folder / "joy.mp4", [("grin|joy", "twemoji")], seconds=3, fps=8),
        emoji_over_photo(folder / "tears.mp4", [("sob|cry", "twemoji"), ("rage", "noto")], seconds=3, fps=8),
    ]


def run_page(page: str) -> AppTest:
    app = AppTest.from_file(str(APP / "pages" / f"{page}.py"), default_timeout=120)
    app.run()
    return app


def upload_and_analyze(app: AppTest, files) -> AppTest:
    app.get("file_uploader")[0].set_value(files)
    app.button[0].click()  # the form's submit button
    app.run()
    return app


def clip_file(path):
    return (path.name, path.read_bytes(), "video/mp4")


# ---- navigation ----------------------------------------------------------------------------------------------------


def test_main_page_runs_with_every_section(app_env, full_server) -> None:
    app_env(full_server)
    app = AppTest.from_file(str(APP / "main.py"), default_timeout=60)
    app.run()
    assert not app.exception
    assert app.title[0].value == "Analyze clips"


# ---- analyze clips, history, compare -------------------------------------------------------------------------------


def test_first_screen_shows_the_newest_stored_analysis(app_env, full_server, cuts) -> None:
    """A newcomer lands on a report, not an empty form: the newest analysis in the store, read back unchanged."""
    app_env(full_server)
    empty = run_page("analyze_clips")
    assert not empty.exception
    assert "Upload one or more clips" in empty.info[0].value and not empty.metric
    analysed = upload_and_analyze(run_page("analyze_clips"), [clip_file(cuts[0])])
    assert not analysed.exception and not analysed.error
    first = run_page("analyze_clips")  # a new session: nothing uploaded in it
    assert not first.exception
    assert "Try it with your own cut" in first.info[0].value and cuts[0].name in first.info[0].value
    assert first.subheader[0].value == cuts[0].name
    assert {m.label: m.value for m in first.metric[:4]} == {m.label: m.value for m in analysed.metric[:4]}


def test_analyze_stores_reopens_and_matches_the_cli(app_env, full_server, cuts, tmp_path) -> None:
    app_env(full_server)
    app = upload_and_analyze(run_page("analyze_clips"), [clip_file(p) for p in cuts])
    assert not app.exception, app.exception
    assert not app.error
    assert [s.value for s in app.subheader] == [p.name for p in cuts]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "facecast",
            "analyze",
            "--json",
            "--quiet",
            "--no-store",
            "--url",
            full_server.triton_url,
            str(cuts[0]),
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    cli = json.loads(done.stdout)[0]
    shown = {m.label: m.value for m in app.metric[:4]}
    assert shown == {
        "Engagement": f"{cli['engagement']['value']:.2f}",
        "Class": cli["engagement_class"],
        "Resonance": f"{cli['resonance']['value']:.2f}",
        "Shareability": f"{cli['shareability']['value']:.2f}",
    }
    table = app.table[0].value
    assert table.loc["engagement", "low"] == f"{cli['engagement']['low']:.3f}"
    assert table.loc["appeal: young adults", "value"] == f"{cli['appeal']['young_adults']['value']:.3f}"

    # The same content again: reopened from DuckDB (same analysis ids), not recomputed.
    from facecast.store import open_store

    again = upload_and_analyze(run_page("analyze_clips"), [clip_file(cuts[0])])
    assert not again.exception
    assert again.subheader[0].value == cuts[0].name and again.metric[0].value == shown["Engagement"]
    with open_store(tmp_path / "app.duckdb") as store:  # same process: shares the app's database instance
        assert len(store.analyses.newest()) == 2

    history = run_page("history")
    assert not history.exception
    assert list(history.dataframe[0].value["name"]) == [cuts[1].name, cuts[0].name]
    history.selectbox[0].select(int(history.dataframe[0].value["id"].iloc[1]))
    history.run()
    assert history.subheader[0].value == cuts[0].name
    assert history.metric[0].value == f"{cli['engagement']['value']:.2f}"

    compare = run_page("compare_cuts")
    assert not compare.exception
    engagement = {p.name: float(app.table[i].value.loc["engagement", "value"]) for i, p in enumerate(cuts)}
    differences = compare.table[0].value
    assert set(differences.index) >= {"engagement", "resonance", "shareability", "appeal: children"}
    assert differences.loc["engagement", "best cut"] == max(engagement, key=engagement.get)
    best = compare.table[1].value
    assert best.loc["everyone (engagement)", "best cut"] == max(engagement, key=engagement.get)
    assert compare.get("altair_chart") or compare.get("vega_lite_chart")


def test_bad_upload_gets_a_clear_message(app_env, full_server) -> None:
    app_env(full_server)
    app = upload_and_analyze(
        run_page("analyze_clips"),
        [("notes.mp4", b"this is not a video", "video/mp4"), ("empty.mov", b"", "video/quicktime")],
    )
    assert not app.exception
    messages = [e.value for e in app.error]
    assert any("notes.mp4 cannot be analysed" in m and "not a video" in m for m in messages), messages
    assert any("empty.mov cannot be analysed" in m for m in messages), messages
    assert all("/tmp" not in m for m in messages)  # the temporary path is not the user's business


def test_analyze_with_triton_down_shows_a_banner_and_retry(app_env, triton_down) -> None:
    app_env(triton_down)
    app = run_page("analyze_clips")
    assert not app.exception
    assert "model server is not available" in app.error[0].value
    assert app.button[0].label == "Retry"
    app.button[0].click().run()  # still down: the same banner again, never a traceback
    assert not app.exception and "model server is not available" in app.error[0].value


def test_history_and_compare_when_nothing_was_analysed(app_env, triton_down) -> None:
    app_env(triton_down)  # neither page needs Triton: they read stored reports
    history = run_page("history")
    assert not history.exception and "No clip has been analysed yet" in history.info[0].value
    compare = run_page("compare_cuts")
    assert not compare.exception and "at least two analysed cuts" in compare.info[0].value


def test_html_report_is_self_contained(full_server, cuts) -> None:
    from facecast.clips.pipeline import ClipAnalyzer

    report = ClipAnalyzer.for_urls([full_server.triton_url]).analyze(cuts[1]).report
    page = report_html(EngagementReport.from_dict(json.loads(json.dumps(report.as_dict()))))
    assert page.startswith("<!doctype html>") and "<svg" in page and "data:image/png;base64," in page
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert f"{report.engagement.value:.2f}" in page


# ---- expression library --------------------------------------------------------------------------------------------


def test_empty_library_says_how_to_fill_it(app_env, full_server) -> None:
    app_env(full_server)
    app = run_page("expression_library")
    assert not app.exception
    assert "The library is empty" in app.info[-1].value


def test_library_add_search_and_feedback(app_env, full_server, tmp_path) -> None:
    app_env(full_server)
    faces = build_demo(tmp_path / "demo")
    app = run_page("expression_library")
    app.get("file_uploader")[0].set_value(
        [(p.name, p.read_bytes(), "image/png") for p in sorted(faces.glob("*.png"))]
        + [("broken.png", b"not an image", "image/png")]
    )
    next(b for b in app.button if b.label == "Add images").click()
    app.run()
    assert not app.exception, app.exception
    assert "Added 28 expression(s)" in app.success[0].value
    assert any("broken.png" in e.value for e in app.error)

    app = run_page("expression_library")
    app.text_input[0].input("a happy face")
    app.selectbox[1].select("cartoon")  # style filter
    next(b for b in app.button if b.label == "Search").click()
    app.run()
    assert not app.exception, app.exception
    assert app.subheader[0].value == "7 results for the text query"  # the 7 cartoon faces: one per emotion
    cards = [m.value for m in app.markdown if m.value.startswith("**#")]
    assert cards and all("cartoon" in card for card in cards)  # the filter is a hard constraint
    use = next(b for b in app.button if b.label == "Use this")
    use.click()
    app.run()
    assert not app.exception
    assert "Using expression" in app.success[0].value

    from facecast.store import open_store

    st.cache_resource.clear()
    with open_store(tmp_path / "app.duckdb") as store:
        feedback = store.feedback.for_profile("app")
        assert (feedback["kind"] == "selected").sum() == 1 and (feedback["kind"] == "skipped").sum() == len(cards) - 1


def test_library_search_with_triton_down(app_env, triton_down, tmp_path) -> None:
    """The library opens without the server (its items are in DuckDB); a search needs the text embedder, so it
    shows the banner, and Retry while the server is still down shows it again."""
    from facecast.store import EMBEDDING_DIM, LibraryItem, open_store

    db = tmp_path / "library.duckdb"
    vectors = np.eye(3, EMBEDDING_DIM, dtype=np.float32)
    with open_store(db) as store:
        store.library.add(
            [
                LibraryItem(
                    content_sha256=f"item-{i}",
                    source="test",
                    source_path=f"faces/{i}.png",
                    emotion="happiness",
                    style="cartoon",
                    emotion_probs=np.eye(7)[0],
                    style_probs=np.eye(4)[1],
                    embedding=vectors[i],
                    thumbnail=b"\x89PNG test",
                )
                for i in range(3)
            ]
        )
    app_env(triton_down, db=db)
    app = run_page("expression_library")
    assert not app.exception and not app.error
    app.text_input[0].set_value("a happy face")
    next(button for button in app.button if button.label == "Search").click().run()
    assert not app.exception
    assert "The search needs the model server" in app.error[0].value and "not reachable" in app.error[0].value
    retry = next(button for button in app.button if button.label == "Retry")
    retry.click().run()
    assert not app.exception


# ---- classify faces ------------------------------------------------------------------------------------------------


def test_classify_demo_faces_shows_the_served_prediction(app_env, full_server, tmp_path) -> None:
    app_env(full_server)
    faces = build_demo(tmp_path / "demo")
    chosen = [faces / "cartoon-happiness.png", faces / "anime-sadness.png"]
    app = run_page("classify_faces")
    assert not app.exception and not app.error
    app.multiselect[0].set_value(chosen)
    app.button[0].click()
    app.run()
    assert not app.exception, app.exception
    assert "2 of 2 image(s) classified" in app.subheader[0].value
    expected = ExpressionRecognizer(TritonModelClient(EXPRESSION_ENCODER, full_server.triton_url)).predict(
        np.stack([load_face(p, 64) for p in chosen])
    )
    shown = [m.value for m in app.metric if m.label == "Emotion"]
    assert shown == [p.emotion for p in expected]


def test_classify_without_input_asks_for_some(app_env, full_server) -> None:
    app_env(full_server)
    app = run_page("classify_faces")
    app.button[0].click()
    app.run()
    assert not app.exception
    assert "Upload a face image" in app.info[0].value


def test_classify_with_triton_down_shows_a_banner_and_retry(app_env, triton_down, expression_repository) -> None:
    """Retry really retries: while the server is down the banner comes back; once a server answers on that
    address, the same click brings the page up."""
    app_env(triton_down)
    app = run_page("classify_faces")
    assert not app.exception
    assert "model server is not available" in app.error[0].value
    assert app.button[0].label == "Retry"
    app.button[0].click().run()
    assert not app.exception and "model server is not available" in app.error[0].value
    grpc, metrics = process.find_free_ports(2)
    up = triton_down.with_overrides(grpc_port=grpc, metrics_port=metrics, model_repository=expression_repository)
    with process.running_server(up, model_repository=expression_repository):
        app.button[0].click().run()
        assert not app.exception and not app.error
        assert app.get("file_uploader"), "the page is up: it offers the uploader"


# ---- style mapping -------------------------------------------------------------------------------------------------


def upload_face(app: AppTest, name: str, data: bytes) -> AppTest:
    if app.radio[0].value != "An uploaded face":
        app.radio[0].set_value("An uploaded face")
        app.run()
    app.get("file_uploader")[0].set_value((name, data, "image/png"))
    app.run()
    return app


def test_style_mapping_upload_map_and_save(app_env, full_server, tmp_path) -> None:
    from facecast.mapping import StyleMapper
    from facecast.store import open_store
    from facecast.vocab import ACTION_PARAMS, STYLE_PARAM_BOUNDS, STYLES

    app_env(full_server)
    faces = build_demo(tmp_path / "demo")
    source = faces / "realistic-happiness.png"
    app = run_page("style_mapping")
    assert not app.exception
    assert "The library is empty" in app.info[0].value  # the default source is a library item
    app = upload_face(app, source.name, source.read_bytes())
    assert not app.exception, app.exception
    assert not app.error, [e.value for e in app.error]
    assert "In all four styles" in [s.value for s in app.subheader]
    images = app.get("image")
    assert [i.captions[0] for i in images[:5]] == [f"source: {source.name}"] + [s.replace("_", " ") for s in STYLES]

    app.selectbox[0].select("anime")
    app.run()
    sliders = {s.label: s for s in app.slider}
    assert list(sliders) == list(ACTION_PARAMS)
    for param, (low, high) in STYLE_PARAM_BOUNDS["anime"].items():  # the sliders run over the target's bounds
        assert (sliders[param].min, sliders[param].max) == (pytest.approx(low), pytest.approx(high))
        assert low <= sliders[param].value <= high
    sliders["mouth"].set_value(0.3)
    next(b for b in app.button if b.label == "Map").click()
    app.run()
    assert not app.exception, app.exception
    table = app.dataframe[0].value.set_index("parameter")
    expected = StyleMapper.for_urls(full_server.triton_url).map_expression(source, "anime", {"mouth": 0.3})
    assert table.loc["mouth", "applied"] == pytest.approx(0.3)
    for param in ACTION_PARAMS:  # the page shows what the served model drew
        assert table.loc[param, "applied"] == pytest.approx(round(expected.applied_params[param], 3), abs=2e-3)

    next(b for b in app.button if b.label == "Save to library").click()
    app.run()
    assert not app.exception, app.exception
    saved = app.success[0].value
    assert saved.startswith("Saved as library item") and f"mapped from upload {source.name}" in saved
    item_id = int(saved.split("library item ")[1].split()[0])
    with open_store(tmp_path / "app.duckdb") as store:  # same process: shares the app's database instance
        row = store.library.items([item_id]).iloc[0]
    assert row["style"] == "anime" and row["source"].startswith(f"mapped from upload {source.name} (")
    assert np.asarray(row["params"])[0] == pytest.approx(0.3)

    # The saved face is now a library item: pick it as the source.
    app.radio[0].set_value("A library item")
    app.run()
    assert not app.exception and not app.error
    assert app.selectbox[0].value == item_id
    assert "In all four styles" in [s.value for s in app.subheader]


def test_style_mapping_test_face_shows_each_style_beside_its_true_drawing(app_env, full_server, tmp_path) -> None:
    from facecast.vocab import STYLES

    app_env(full_server)
    sets = build_demo_style_sets(tmp_path / "demo")  # where app_env points the app's demo folder
    app = run_page("style_mapping")
    app.radio[0].set_value("A test face with its true drawings")
    app.run()
    assert not app.exception, app.exception
    app.selectbox[1].select("cartoon")  # drawn in
    app.run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    captions = [i.captions[0] for i in app.get("image")]
    first = sorted(p.name for p in sets.glob("set-*"))[0]
    assert captions[:5] == [f"source: {first} (cartoon)"] + [s.replace("_", " ") for s in STYLES]
    assert captions[5:9] == [f"true {s.replace('_', ' ')}" for s in STYLES]
    scores = [c.value for c in app.caption if c.value.startswith("mapping vs truth: PSNR")]
    assert len(scores) == len(STYLES)
    # the source's own style is (nearly) its own drawing; the others are real mappings, measured, not copied
    values = {s: float(c.split("PSNR ")[1].split()[0]) for s, c in zip(STYLES, scores)}
    assert all(8 < v < 60 for v in values.values()), values


def test_style_mapping_bad_uploads_get_clear_messages(app_env, full_server) -> None:
    app_env(full_server)
    app = upload_face(run_page("style_mapping"), "notes.png", b"this is not a picture")
    assert not app.exception
    assert "cannot be mapped" in app.error[0].value and "notes.png" in app.error[0].value
    app = upload_face(app, "tiny.png", _png(np.full((12, 12, 3), 90, np.uint8)))
    assert not app.exception and "too small" in app.error[0].value

    blank = _png(np.full((200, 200, 3), 255, np.uint8))
    app = upload_face(app, "blank.png", blank)
    assert not app.exception
    assert "No face found" in app.error[0].value and "Map even if no face is found" in app.error[0].value
    app.checkbox[0].check()
    app.run()
    assert not app.exception and not app.error
    assert "face detection skipped" in " ".join(c.value for c in app.caption)


def test_style_mapping_with_triton_down_shows_a_banner_and_retry(app_env, triton_down) -> None:
    app_env(triton_down)
    app = run_page("style_mapping")
    assert not app.exception
    assert "model server is not available" in app.error[0].value
    assert app.button[0].label == "Retry"


def _png(pixels: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


# ---- ops -----------------------------------------------------------------------------------------------------------


def test_status_page_lists_models_stats_and_runs_a_load_test(app_env, full_server) -> None:
    app_env(full_server)
    app = run_page("triton_status")
    assert not app.exception
    assert [m.value for m in app.metric if m.label == "Server"] == ["ready"]
    models = app.dataframe[1].value
    assert set(models["model"]) == set(ALL_MODELS)
    row = models[models["model"] == EXPRESSION_ENCODER].iloc[0]
    assert row["state"] == "READY" and row["dynamic batching"] == "on" and row["max batch"] > 0
    app.slider[0].set_value(1.0)  # seconds
    app.button[0].click()  # "Run load test"
    app.run()
    assert not app.exception, app.exception
    shown = {m.label: m.value for m in app.metric}
    assert float(shown["Throughput"].split()[0]) > 0
    app.run()
    stats = app.dataframe[2].value
    served = stats[stats["model"] == EXPRESSION_ENCODER].iloc[0]
    assert served["requests"] > 0 and served["executions"] > 0


def test_status_page_with_triton_down(app_env, triton_down) -> None:
    app_env(triton_down)
    app = run_page("triton_status")
    assert not app.exception
    assert "No Triton server answers" in app.error[0].value


# ---- calibrate -------------------------------------------------------------------------------------------------------


def test_calibrate_refuses_a_bad_metrics_csv_row_by_row_and_starts_nothing(app_env, triton_down, tmp_path) -> None:
    app_env(triton_down)  # checking the CSV needs no server
    app = run_page("calibrate")
    assert not app.exception and "Serving now:** engagement model v1" in app.markdown[0].value
    csv = b"path,views,likes,shares,watch_pct\nnot-here.mp4,1000,10,1,50\nnot-here.mp4,1000,10,1,500\n"
    app.get("file_uploader")[0].set_value(("metrics.csv", csv, "text/csv"))
    app.button[0].click()  # the form's submit button
    app.run()
    assert not app.exception
    problems = app.error[0].value
    assert "3 problems" in problems and "Nothing was saved or started" in problems
    assert "row 2: unknown clip not-here.mp4" in problems
    assert "row 3: not-here.mp4 is listed twice" in problems and "row 3: watch_pct is a percentage" in problems
    assert not (tmp_path / "calibration").exists()  # no job folder, no process


def test_calibrate_activates_a_validated_version_and_rolls_back_in_one_click(app_env, triton_down, tmp_path) -> None:
    from facecast.store import open_store

    app_env(triton_down)
    validation = {
        "clips": 30,
        "folds": 5,
        "default": {"spearman": 0.21, "class_accuracy": 0.4, "coverage": 0.7},
        "calibrated": {"spearman": 0.83, "class_accuracy": 0.7, "coverage": 0.9},
        "spearman_gain_interval": [0.41, 0.8],
        "statement": "On your 30 clips ... it can be activated.",
        "per_clip": {"clip_row": [0, 1], "observed": [0.2, 0.6], "default": [0.5, 0.4], "calibrated": [0.3, 0.5]},
    }
    with open_store(tmp_path / "app.duckdb") as store:
        store.engagement_models.add(2, "calibrated on 30 studio clips, 2026-12-06", "lead", {"clips_with_faces": 30},
                                    validation, True)  # fmt: skip
    app = run_page("calibrate")
    assert not app.exception and "Roll back" not in [b.label for b in app.button]
    app.selectbox[0].select(2).run()
    assert not app.exception and "it can be activated" in app.success[0].value
    app.button(key="activate-2").click().run()
    assert not app.exception and "Serving now:** engagement model v2" in app.markdown[0].value
    with open_store(tmp_path / "app.duckdb") as store:
        assert store.engagement_models.active().version == 2
    rollback = next(b for b in app.button if b.label == "Roll back to v1")
    rollback.click().run()
    assert not app.exception and "Serving now:** engagement model v1" in app.markdown[0].value
    with open_store(tmp_path / "app.duckdb") as store:
        assert store.engagement_models.active().version == 1 and store.engagement_models.previous().version == 2


def test_history_offers_to_rescore_clips_another_model_scored(app_env, triton_down, tmp_path) -> None:
    import json as json_module

    from facecast.store import open_store
    from facecast.store.rows import AnalysisRecord, ClipRow, FaceRow, ScoreRow

    app_env(triton_down)  # re-scoring needs the engagement model: with Triton down the page says so
    probs7, probs4 = np.full(7, 1 / 7, np.float32), np.full(4, 0.25, np.float32)
    report = {
        "clip": {
            "name": "old.mp4",
            "sha256": "a" * 64,
            "size_bytes": 1,
            "duration_s": 4.0,
            "width": 64,
            "height": 64,
            "fps": 12.0,
            "codec": "h264",
        },
        "faces_found": True,
        "models": {"engagement": "1"},
    }
    with open_store(tmp_path / "app.duckdb") as store:
        store.analyses.add(
            AnalysisRecord(ClipRow("a" * 64, "old.mp4", 1, 4.0, 64, 64, 12.0, "h264"), "fp", "old.mp4", True,
                           ScoreRow(0.5, 0.4, 0.6), "medium", 0.5, 0.5, json_module.dumps(report), [],
                           [FaceRow(1, 0.25 * t, (0.1, 0.1, 0.4, 0.5), 0.9, "anger", probs7, probs4, probs4)
                            for t in range(8)])
        )  # fmt: skip
        store.engagement_models.add(2, "calibrated on 30 studio clips", "lead", {}, {}, True)
        store.engagement_models.activate(2, "lead")
    app = run_page("history")
    assert not app.exception
    assert "1 clip was scored by another engagement model" in app.info[0].value
    app.button(key="rescore-all").click().run()
    # made by another pipeline ("fp" is no fingerprint of today's): refused with what to do, never a traceback
    assert not app.exception and "analyse old.mp4 again" in app.warning[0].value
