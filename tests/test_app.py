"""The Streamlit pages, run headless with AppTest against a real Triton (and with Triton down)."""

from __future__ import annotations

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from facecast import triton_server
from facecast.config import PROJECT_ROOT
from facecast.expressions import EXPRESSION_MODEL, ExpressionRecognizer
from facecast.images import load_face
from facecast.triton_client import TritonModelClient
from tests.conftest import settings_environment
from training.data.demo import build_demo

pytestmark = pytest.mark.triton
APP = PROJECT_ROOT / "app"


@pytest.fixture
def app_env(monkeypatch, tmp_path):
    """Point the app's settings somewhere and drop cached resources so each test sees its own settings."""

    def apply(settings) -> None:
        for key, value in settings_environment(settings).items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("FACECAST_DEMO_DIR", str(tmp_path / "demo"))
        st.cache_resource.clear()

    yield apply
    st.cache_resource.clear()


def run_page(page: str) -> AppTest:
    app = AppTest.from_file(str(APP / "pages" / f"{page}.py"), default_timeout=60)
    app.run()
    return app


def test_main_page_runs(app_env, expression_server) -> None:
    app_env(expression_server)
    app = AppTest.from_file(str(APP / "main.py"), default_timeout=60)
    app.run()
    assert not app.exception
    assert app.title[0].value == "Classify faces"


def test_classify_demo_faces_shows_the_served_prediction(app_env, expression_server, tmp_path) -> None:
    app_env(expression_server)
    faces = build_demo(tmp_path / "demo")
    chosen = [faces / "cartoon-happiness.png", faces / "anime-sadness.png"]
    app = run_page("classify_faces")
    assert not app.exception and not app.error
    app.multiselect[0].set_value(chosen)
    app.button[0].click()  # the form's submit button
    app.run()
    assert not app.exception, app.exception
    assert "2 of 2 image(s) classified" in app.subheader[0].value
    expected = ExpressionRecognizer(TritonModelClient(EXPRESSION_MODEL, expression_server.triton_url)).predict(
        np.stack([load_face(p, 64) for p in chosen]))
    shown = [m.value for m in app.metric if m.label == "Emotion"]
    assert shown == [p.emotion for p in expected]


def test_classify_without_input_asks_for_some(app_env, expression_server) -> None:
    app_env(expression_server)
    app = run_page("classify_faces")
    app.button[0].click()
    app.run()
    assert not app.exception
    assert "Upload a face image" in app.info[0].value


def test_classify_with_triton_down_shows_a_banner_and_retry(app_env, tmp_path) -> None:
    from facecast.config import Settings

    (port,) = triton_server.find_free_ports(1)
    app_env(Settings().with_overrides(http_port=port, run_dir=tmp_path / "run", db_path=tmp_path / "db.duckdb"))
    app = run_page("classify_faces")
    assert not app.exception
    assert "model server is not available" in app.error[0].value
    assert app.button[0].label == "Retry"


def test_status_page_lists_the_model_and_its_batching(app_env, expression_server) -> None:
    app_env(expression_server)
    app = run_page("triton_status")
    assert not app.exception
    assert [m.value for m in app.metric if m.label == "Server"] == ["ready"]
    table = app.dataframe[0].value
    row = table[table["model"] == EXPRESSION_MODEL].iloc[0]
    assert row["state"] == "READY" and row["dynamic batching"] == "on" and row["max batch"] > 0


def test_status_page_with_triton_down(app_env, tmp_path) -> None:
    from facecast.config import Settings

    (port,) = triton_server.find_free_ports(1)
    app_env(Settings().with_overrides(http_port=port, run_dir=tmp_path / "run"))
    app = run_page("triton_status")
    assert not app.exception
    assert "No Triton server answers" in app.error[0].value
