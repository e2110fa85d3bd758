"""End to end in a real browser: Chromium (Debian's) driven by Playwright against `streamlit run` and a real Triton.

This is the only test that runs the app the way `make run` does, as a separate `streamlit run` process; AppTest runs
pages inside the test process, where import paths and working directory differ.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from facecast import triton_server
from facecast.config import PROJECT_ROOT
from facecast.expressions import EXPRESSION_MODEL, ExpressionRecognizer
from facecast.images import load_face
from facecast.triton_client import TritonModelClient
from tests.conftest import settings_environment
from training.data.demo import build_demo

pytestmark = pytest.mark.triton
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = PROJECT_ROOT / "artifacts"


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("FACECAST_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is not installed (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def app_url(expression_server, tmp_path_factory):
    demo = tmp_path_factory.mktemp("demo")
    build_demo(demo)
    (port,) = triton_server.find_free_ports(1)
    env = {**os.environ, **settings_environment(expression_server), "FACECAST_DEMO_DIR": str(demo)}
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.port", str(port)],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                break
        except OSError:
            if process.poll() is not None:
                pytest.fail(f"streamlit exited: {process.stdout.read()}")
            time.sleep(0.5)
    yield url, demo / "faces"
    process.terminate()
    output, _ = process.communicate(timeout=20)
    assert "Traceback" not in output, output


def test_classify_demo_faces_in_the_browser(browser, app_url, expression_server) -> None:
    url, faces = app_url
    chosen = ["cartoon-surprise", "anime-happiness", "realistic-sadness"]
    page = browser.new_page(viewport={"width": 1300, "height": 1500})
    page.goto(url, timeout=60_000)
    page.get_by_role("heading", name="Classify faces").wait_for(timeout=60_000)
    picker = page.get_by_role("combobox")
    for name in chosen:  # the option list is virtualised: type to filter, as a person would
        picker.click()
        picker.fill(name)
        page.get_by_role("option", name=name).click()
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Classify").click()
    page.get_by_text("3 of 3 image(s) classified").wait_for(timeout=60_000)
    page.locator('[data-testid="stImage"] img').first.wait_for(timeout=30_000)
    page.locator('[data-testid="stVegaLiteChart"]').first.wait_for(timeout=30_000)
    page.wait_for_timeout(1000)  # let the charts finish drawing before the screenshot
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "classify-faces.png"), full_page=True)

    expected = ExpressionRecognizer(TritonModelClient(EXPRESSION_MODEL, expression_server.triton_url)).predict(
        np.stack([load_face(faces / f"{name}.png", 64) for name in chosen]))
    shown = page.locator('[data-testid="stMetric"]').filter(has_text="Emotion").locator(
        '[data-testid="stMetricValue"]').all_inner_texts()
    assert shown == [p.emotion for p in expected]
    assert page.get_by_text("Traceback").count() == 0
    page.close()


def test_status_page_in_the_browser(browser, app_url) -> None:
    url, _ = app_url
    page = browser.new_page()
    page.goto(url, timeout=60_000)
    page.get_by_role("link", name="Triton status").click()
    page.get_by_role("heading", name="Triton status").wait_for(timeout=60_000)
    page.get_by_text("READY").first.wait_for(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "triton-status.png"), full_page=True)
    page.close()
