"""Driving the real app in a real browser: Debian's Chromium through Playwright, and `streamlit run` as a process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from facecast.config import PROJECT_ROOT
from facecast.serving.process import find_free_ports

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium() -> Iterator:
    """A headless Chromium (playwright cannot download its own browser here: docs/platform.md)."""
    if not os.path.exists(CHROMIUM):
        if os.environ.get("FACECAST_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is not installed (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def start_streamlit(
    env: dict[str, str], *args: str, port: int | None = None, output: int = subprocess.PIPE
) -> tuple[subprocess.Popen, str]:
    """`streamlit run app/main.py` as a process (as `make run` starts it), returned once its health endpoint
    answers, with its URL. `output`: where its stdout and stderr go (subprocess.PIPE to read them afterwards)."""
    if port is None:
        (port,) = find_free_ports(1)
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.port", str(port), *args],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                return process, url
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"streamlit exited: {process.stdout.read() if process.stdout else ''}") from None
            time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"streamlit did not answer on {url} within 60 s")


@contextmanager
def streamlit_app(env: dict[str, str], *args: str, port: int | None = None) -> Iterator[str]:
    """The app as a process (start_streamlit) for a `with` block; stops it afterwards and fails the test if it
    printed a traceback."""
    try:
        process, url = start_streamlit(env, *args, port=port)
    except RuntimeError as error:
        pytest.fail(str(error))
    try:
        yield url
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=20)
    assert "Traceback" not in output, output
