"""End to end in a real browser: Chromium (Debian's) driven by Playwright against `streamlit run` and a real Triton.

This is the only test that runs the app the way `make run` does, as a separate `streamlit run` process (with the
demo library prepared by `python -m training.data.demo --library` first); AppTest runs pages inside the test
process, where import paths and working directory differ. Screenshots go to artifacts/.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from playwright.sync_api import expect

from app.components.uploads import IMAGE_UPLOAD_MB
from facecast.clients.expression_encoder import ExpressionRecognizer
from facecast.config import PROJECT_ROOT
from facecast.media.images import load_face
from facecast.serving.client import TritonModelClient
from facecast.vocab import AUDIENCE_GROUPS, EXPRESSION_ENCODER
from tests.browser_helpers import chromium, streamlit_app
from tests.clipmaker import emoji_over_photo
from tests.conftest import settings_environment

pytestmark = pytest.mark.triton
ARTIFACTS = PROJECT_ROOT / "artifacts"


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


WAIT_MS = 90_000


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Two cuts made here (licensed emoji over a photograph), not by the synthetic generator."""
    folder = tmp_path_factory.mktemp("cuts")
    return [
        emoji_over_photo(folder / "cut-joy.mp4", [("grin|joy", "twemoji")], seconds=4, fps=8),
        emoji_over_photo(folder / "cut-tears.mp4", [("sob|cry", "twemoji"), ("rage", "noto")], seconds=4, fps=8),
    ]


@pytest.fixture(scope="module")
def cli_reports(full_server, clips, tmp_path_factory):
    """What `facecast analyze --json` says about the same clips (its own store, so the app computes them again)."""
    db = tmp_path_factory.mktemp("cli") / "cli.duckdb"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "facecast",
            "analyze",
            "--json",
            "--quiet",
            "--db",
            str(db),
            "--url",
            full_server.triton_url,
            *map(str, clips),
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return {report["clip"]["name"]: report for report in json.loads(done.stdout)}


@pytest.fixture(scope="module")
def app_url(full_server, tmp_path_factory):
    state = tmp_path_factory.mktemp("app_state")
    demo = state / "demo"
    env = {
        **os.environ,
        **settings_environment(full_server),
        "FACECAST_DEMO_DIR": str(demo),
        "FACECAST_DB": str(state / "app.duckdb"),
    }
    # The demo library step of `make run`: demo faces + licensed emoji, through the served embedders.
    prepared = subprocess.run(
        [sys.executable, "-m", "training.data.demo", "--library"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert prepared.returncode == 0, prepared.stdout + prepared.stderr
    with streamlit_app(env) as url:
        yield url, demo / "faces"


def open_page(browser, url: str, title: str | None = None):
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    page.goto(url, timeout=WAIT_MS)
    if title is not None:
        page.get_by_role("link", name=title).click()
        page.get_by_role("heading", name=title).wait_for(timeout=WAIT_MS)
    return page


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.wait_for_timeout(800)  # let charts finish drawing
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def upload(page, uploader, *paths) -> None:
    """Choose files in an st.file_uploader; tried again if a rerun that was still finishing re-drew the widget."""
    for attempt in range(3):
        uploader.locator('input[type="file"]').set_input_files([str(p) for p in paths])
        try:
            # narrow uploaders shorten long names in the middle ("realist…piness.png"): match the end
            uploader.get_by_text(re.compile(re.escape(paths[-1].name[-8:]) + "$")).first.wait_for(timeout=15_000)
            return
        except Exception:  # noqa: BLE001 - playwright's TimeoutError; the last attempt re-raises below
            if attempt == 2:
                screenshot(page, "upload-failed")
                raise


def test_analyze_two_cuts_matches_the_cli_then_compare_and_history(browser, app_url, clips, cli_reports) -> None:
    url, _ = app_url
    page = open_page(browser, url)
    page.get_by_role("heading", name="Analyze clips").wait_for(timeout=WAIT_MS)
    upload(page, page.locator('[data-testid="stFileUploader"]'), *clips)
    page.get_by_role("button", name="Analyze").click()
    page.get_by_role("tab", name=clips[1].name).wait_for(timeout=WAIT_MS)
    for clip in clips:
        page.get_by_role("tab", name=clip.name).click()
        panel = page.get_by_role("tabpanel").filter(has_text=clip.name)
        panel.locator('[data-testid="stVegaLiteChart"]').first.wait_for(timeout=WAIT_MS)
        expected = cli_reports[clip.name]
        metrics = dict(
            zip(
                panel.locator('[data-testid="stMetricLabel"]').all_inner_texts(),
                panel.locator('[data-testid="stMetricValue"]').all_inner_texts(),
            )
        )
        assert metrics["Engagement"] == f"{expected['engagement']['value']:.2f}"
        assert metrics["Class"] == expected["engagement_class"]
        assert metrics["Resonance"] == f"{expected['resonance']['value']:.2f}"
        assert metrics["Shareability"] == f"{expected['shareability']['value']:.2f}"
        table = panel.locator('[data-testid="stTable"] table').first
        table.locator("tbody tr").last.wait_for(timeout=WAIT_MS)
        shown = {
            row.locator("th").first.inner_text().strip(): [c.strip() for c in row.locator("td").all_inner_texts()]
            for row in table.locator("tbody tr").all()
        }
        for name in ("engagement", "resonance", "shareability"):
            assert shown[name] == [f"{expected[name][k]:.3f}" for k in ("value", "low", "high")], name
        for group in AUDIENCE_GROUPS:
            appeal = expected["appeal"][group]
            assert shown[f"appeal: {group.replace('_', ' ')}"] == [f"{appeal[k]:.3f}" for k in ("value", "low", "high")]
        screenshot(page, f"analyze-{clip.stem}")
    assert page.get_by_text("Traceback").count() == 0

    # Compare cuts: both analysed cuts, overlaid; the best cut per audience group is the one with the higher score.
    page.get_by_role("link", name="Compare cuts").click()
    page.get_by_role("heading", name="Compare cuts").wait_for(timeout=WAIT_MS)
    page.get_by_text("Predicted best cut").wait_for(timeout=WAIT_MS)
    best_table = page.locator('[data-testid="stTable"]').filter(has_text="everyone (engagement)")
    best_table.locator("tbody tr").last.wait_for(timeout=WAIT_MS)
    best = {
        row.locator("th").inner_text().strip(): row.locator("td").inner_text().strip()
        for row in best_table.locator("tbody tr").all()
    }
    for group in AUDIENCE_GROUPS:
        winner = max(cli_reports, key=lambda name: cli_reports[name]["appeal"][group]["value"])
        assert best[group.replace("_", " ")] == winner
    page.get_by_text("Moments that explain the difference").wait_for()
    screenshot(page, "compare-cuts")

    # History reopens a stored analysis without recomputing it.
    page.get_by_role("link", name="History").click()
    page.get_by_role("heading", name="History").wait_for(timeout=WAIT_MS)
    page.get_by_role("combobox").click()
    page.get_by_role("option").filter(has_text=clips[0].name).click()
    page.get_by_role("heading", name=clips[0].name).wait_for(timeout=WAIT_MS)
    shown = (
        page.locator('[data-testid="stMetric"]')
        .filter(has_text="Engagement")
        .locator('[data-testid="stMetricValue"]')
        .inner_text()
    )
    assert shown == f"{cli_reports[clips[0].name]['engagement']['value']:.2f}"
    screenshot(page, "history")
    page.close()


def test_expression_library_text_and_image_search_with_feedback(browser, app_url) -> None:
    url, faces = app_url
    page = open_page(browser, url, "Expression library")
    page.get_by_label("Describe the expression").fill("a furious angry cartoon face")
    page.get_by_role("button", name="Search", exact=True).and_(
        page.get_by_test_id("stBaseButton-primaryFormSubmit")
    ).click()
    page.get_by_role("heading", name="12 results for the text query").wait_for(timeout=WAIT_MS)
    first_card = page.locator(".st-key-result-1").filter(visible=True)  # Streamlit may keep a stale card hidden
    # the heading can arrive before the cards are filled in (Streamlit streams the page): wait for the card's button
    first_card.get_by_role("button", name="Good").wait_for(timeout=WAIT_MS)
    assert "anger" in first_card.inner_text()
    screenshot(page, "library-text-search")
    first_card.get_by_role("button", name="Good").click()
    page.get_by_text("rated up").first.wait_for(timeout=WAIT_MS)

    page.get_by_label("Describe the expression").fill("")
    upload(
        page,
        page.locator('[data-testid="stFileUploader"]').filter(has_text="reference face"),
        faces / "realistic-happiness.png",
    )
    page.get_by_role("button", name="Search", exact=True).and_(
        page.get_by_test_id("stBaseButton-primaryFormSubmit")
    ).click()
    page.get_by_role("heading", name="12 results for the image query").wait_for(timeout=WAIT_MS)
    first_card = page.locator(".st-key-result-1").filter(visible=True)  # Streamlit may keep a stale card hidden
    # while Streamlit replaces the text query's cards, the old card and the new one can both be in the page for a
    # moment: wait until the first card is the new one alone
    expect(first_card.get_by_role("button", name="Use this")).to_have_count(1, timeout=WAIT_MS)
    expect(first_card).to_contain_text("realistic-happiness.png", timeout=WAIT_MS)  # the face searched for ranks first
    first_card.get_by_role("button", name="Use this").click()
    page.get_by_text("Using expression").first.wait_for(timeout=WAIT_MS)
    screenshot(page, "library-image-search")
    assert page.get_by_text("Traceback").count() == 0
    page.close()


def test_classify_demo_faces_in_the_browser(browser, app_url, full_server) -> None:
    url, faces = app_url
    chosen = ["cartoon-surprise", "anime-happiness", "realistic-sadness"]
    page = open_page(browser, url, "Classify faces")
    picker = page.get_by_role("combobox")
    for name in chosen:  # the option list is virtualised: type to filter, as a person would
        picker.click()
        picker.fill(name)
        page.get_by_role("option", name=name).click()
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Classify").click()
    page.get_by_text("3 of 3 image(s) classified").wait_for(timeout=WAIT_MS)
    page.locator('[data-testid="stImage"] img').first.wait_for(timeout=30_000)
    page.locator('[data-testid="stVegaLiteChart"]').first.wait_for(timeout=30_000)
    screenshot(page, "classify-faces")

    expected = ExpressionRecognizer(TritonModelClient(EXPRESSION_ENCODER, full_server.triton_url)).predict(
        np.stack([load_face(faces / f"{name}.png", 64) for name in chosen])
    )
    shown = (
        page.locator('[data-testid="stMetric"]')
        .filter(has_text="Emotion")
        .locator('[data-testid="stMetricValue"]')
        .all_inner_texts()
    )
    assert shown == [p.emotion for p in expected]
    assert page.get_by_text("Traceback").count() == 0
    page.close()


def test_style_mapping_in_the_browser(browser, app_url, tmp_path) -> None:
    url, faces = app_url
    page = open_page(browser, url, "Style mapping")
    page.get_by_text("An uploaded face").click()
    uploader = page.locator('[data-testid="stFileUploader"]')
    # a picture over the pictures' own limit is refused by the browser, long before the 1 GB allowed for clips
    oversized = tmp_path / "poster.png"
    oversized.write_bytes(b"\0" * (IMAGE_UPLOAD_MB * 1024 * 1024 + 1))
    uploader.locator('input[type="file"]').set_input_files(str(oversized))
    expect(uploader).to_contain_text(f"File must be {IMAGE_UPLOAD_MB}.0MB or smaller", timeout=WAIT_MS)
    upload(page, uploader, faces / "cartoon-surprise.png")
    page.get_by_role("heading", name="In all four styles").wait_for(timeout=WAIT_MS)
    # the source and the face in each of the four styles
    page.locator('[data-testid="stImage"] img').nth(4).wait_for(timeout=WAIT_MS)
    page.get_by_role("button", name=re.compile(r"Map$")).click()
    result = page.locator(".st-key-mapping-result")
    result.locator('[data-testid="stImage"] img').first.wait_for(timeout=WAIT_MS)
    result.get_by_role("button", name=re.compile(r"Save to library$")).click()
    page.get_by_text("Saved as library item").wait_for(timeout=WAIT_MS)
    screenshot(page, "style-mapping")
    assert page.get_by_text("Traceback").count() == 0
    page.close()


def test_ops_page_and_load_test_in_the_browser(browser, app_url) -> None:
    url, _ = app_url
    page = open_page(browser, url, "Triton status")
    page.locator('[data-testid="stMetric"]').filter(has_text="Server").get_by_text("ready", exact=True).wait_for(
        timeout=WAIT_MS
    )
    page.get_by_role("button", name="Run load test").click()
    page.get_by_text("Throughput").wait_for(timeout=WAIT_MS)
    throughput = (
        page.locator('[data-testid="stMetric"]')
        .filter(has_text="Throughput")
        .locator('[data-testid="stMetricValue"]')
        .inner_text()
    )
    assert float(throughput.split()[0]) > 0
    page.get_by_role("button", name="Refresh").click()
    page.get_by_text("Batch sizes the dynamic batcher formed").wait_for(timeout=WAIT_MS)
    screenshot(page, "triton-status")
    page.close()


def test_no_page_asks_anything_of_the_internet(browser, app_url) -> None:
    """Studios run facecast offline: every request the browser makes, on every page, goes to the app itself
    (a `:material/…:` page icon once made the browser fetch the tab icon from Google's font CDN)."""
    from urllib.parse import urlsplit

    url, _ = app_url
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    elsewhere: list[str] = []
    page.on("request", lambda r: elsewhere.append(r.url) if urlsplit(r.url).netloc != urlsplit(url).netloc else None)
    page.goto(url, timeout=WAIT_MS)
    for title in (
        "Analyze clips",
        "Compare cuts",
        "History",
        "Expression library",
        "Classify faces",
        "Style mapping",
        "Triton status",
    ):
        page.get_by_role("link", name=title).click()
        page.get_by_role("heading", name=title).wait_for(timeout=WAIT_MS)
        page.wait_for_load_state("networkidle", timeout=WAIT_MS)
    page.close()
    assert not [u for u in elsewhere if not u.startswith(("data:", "blob:"))], elsewhere
