"""Sign-in for shared deployments, in Chromium against a real OpenID provider started here (PyPI oidc-provider-mock:
Flask + Authlib, its authorize page asks for a subject): signing in, a role's pages allowed and another role's
refused, signing out, an unknown person with no role, a session that expires, and the refusal to listen on every
interface without sign-in. No Triton is needed: pages that need it say so; navigation is what is checked here."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from facecast.serving.process import find_free_ports
from tests.browser_helpers import chromium, streamlit_app

WAIT_MS = 60_000
SESSION_SECONDS = 25  # the access policy's maximum sign-in age here (docs/operations.md shows the real settings)
USERS = [
    {"sub": "mia", "email": "mia@studio.test"},
    {"sub": "ana", "email": "ana@studio.test", "groups": ["artists"]},
    {"sub": "olu", "email": "olu@studio.test", "groups": ["sre"]},
]
MARKETING = ["Analyze clips", "Compare cuts", "History"]
ARTISTS = ["Expression library", "Classify faces", "Style mapping"]
OPS = ["Triton status"]


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    (port,) = find_free_ports(1)
    claims = [arg for user in USERS for arg in ("--user-claims", json.dumps(user))]
    process = subprocess.Popen(
        [sys.executable, "-m", "oidc_provider_mock", "--port", str(port), *claims],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{url}/.well-known/openid-configuration", timeout=2):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the OpenID provider did not start: {process.stdout.read() if process.stdout else ''}")
            time.sleep(0.3)
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def signed_app(provider, tmp_path_factory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("signin")
    (port,) = find_free_ports(1)
    secrets_file = folder / "secrets.toml"
    secrets_file.write_text(f"""
[auth]
redirect_uri = "http://127.0.0.1:{port}/oauth2callback"
cookie_secret = "{secrets.token_hex(32)}"
client_id = "facecast-test"
client_secret = "{secrets.token_hex(16)}"
server_metadata_url = "{provider}/.well-known/openid-configuration"
""")
    access = folder / "access.toml"
    access.write_text(f"""
[roles]
marketing = ["mia@studio.test"]
artist = ["group:artists"]
ops = ["group:sre"]

[session]
max_age_hours = {SESSION_SECONDS / 3600}
""")
    (triton_port,) = find_free_ports(1)  # nothing listens: the pages that need Triton say so
    env = {
        **os.environ,
        "FACECAST_ACCESS_FILE": str(access),
        "FACECAST_DB": str(folder / "app.duckdb"),
        "FACECAST_HTTP_PORT": str(triton_port),
        "FACECAST_RUN_DIR": str(folder / "run"),
        "FACECAST_DEMO_DIR": str(folder / "demo"),
    }
    with streamlit_app(env, "--secrets.files", str(secrets_file), port=port) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


def sign_in(browser, url: str, subject: str):
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    page = context.new_page()
    page.goto(url, timeout=WAIT_MS)
    page.get_by_text("Sign in to use facecast.").wait_for(timeout=WAIT_MS)
    page.get_by_role("button", name="Sign in").click()
    page.locator('input[name="sub"]').first.fill(subject)  # the provider's own authorize page
    page.get_by_role("button", name="Authorize").click()
    return context, page


def navigation(page) -> list[str]:
    """The pages listed in the sidebar (Streamlit lists none when there is a single page)."""
    page.locator('[data-testid="stMain"]').first.wait_for(timeout=WAIT_MS)
    page.wait_for_timeout(500)  # the sidebar is drawn with the page
    links = page.locator('[data-testid="stSidebarNav"] a')
    return [text.strip().splitlines()[-1] for text in links.all_inner_texts()]  # after the icon's name


def sign_out(page) -> None:
    page.get_by_role("button", name="Sign out").click()
    # Streamlit ends the session at the provider too (RP-initiated logout): its page asks to confirm
    page.get_by_role("button", name="End session").click(timeout=WAIT_MS)
    page.get_by_text("Sign in to use facecast.").wait_for(timeout=WAIT_MS)


def test_a_marketing_user_signs_in_sees_their_pages_only_and_signs_out(browser, signed_app) -> None:
    context, page = sign_in(browser, signed_app, "mia")
    page.get_by_text("Signed in as mia@studio.test").wait_for(timeout=WAIT_MS)
    assert navigation(page) == MARKETING
    # a page of another role is not there at all, even by its address
    page.goto(f"{signed_app}/expression_library", timeout=WAIT_MS)
    page.get_by_text("Page not found").wait_for(timeout=WAIT_MS)  # Streamlit's own answer, then the main page
    page.keyboard.press("Escape")
    page.get_by_text("Signed in as mia@studio.test").wait_for(timeout=WAIT_MS)
    assert page.get_by_role("heading", name="Expression library").count() == 0
    assert navigation(page) == MARKETING
    sign_out(page)
    expect(page.locator('[data-testid="stSidebarNav"] a')).to_have_count(0, timeout=WAIT_MS)
    context.close()


def test_roles_come_from_the_group_claim(browser, signed_app) -> None:
    context, page = sign_in(browser, signed_app, "ana")
    page.get_by_text("Signed in as ana@studio.test (artist)").wait_for(timeout=WAIT_MS)
    assert navigation(page) == ARTISTS
    page.get_by_role("heading", name="Expression library").wait_for(timeout=WAIT_MS)  # the first page allowed
    context.close()
    context, page = sign_in(browser, signed_app, "olu")
    page.get_by_text("Signed in as olu@studio.test (ops)").wait_for(timeout=WAIT_MS)
    page.get_by_role("heading", name="Triton status").wait_for(timeout=WAIT_MS)  # the one page ops has here
    assert navigation(page) == []
    context.close()


def test_someone_without_a_role_is_refused(browser, signed_app) -> None:
    context, page = sign_in(browser, signed_app, "zed@elsewhere.test")
    page.get_by_text("but no role is given to you").wait_for(timeout=WAIT_MS)
    expect(page.locator('[data-testid="stSidebarNav"] a')).to_have_count(0, timeout=WAIT_MS)
    context.close()


def test_an_old_sign_in_is_asked_again(browser, signed_app) -> None:
    context, page = sign_in(browser, signed_app, "mia")
    page.get_by_text("Signed in as mia@studio.test").wait_for(timeout=WAIT_MS)
    page.wait_for_timeout((SESSION_SECONDS + 2) * 1000)
    page.reload()
    page.get_by_text("Your session has expired: sign in again.").wait_for(timeout=WAIT_MS)
    expect(page.locator('[data-testid="stSidebarNav"] a')).to_have_count(0, timeout=WAIT_MS)
    context.close()


def test_without_sign_in_the_app_refuses_to_listen_on_every_interface(browser, tmp_path) -> None:
    env = {**os.environ, "FACECAST_DB": str(tmp_path / "app.duckdb")}
    with streamlit_app(env, "--server.address", "0.0.0.0") as url:
        page = browser.new_page()
        page.goto(url, timeout=WAIT_MS)
        page.get_by_text("facecast will not run like this.").wait_for(timeout=WAIT_MS)
        expect(page.locator('[data-testid="stSidebarNav"] a')).to_have_count(0, timeout=WAIT_MS)
        page.close()


def test_the_policy_file_is_checked(tmp_path: Path) -> None:
    from facecast.access import AccessConfigError, Policy

    bad = tmp_path / "access.toml"
    bad.write_text('[roles]\nwizard = ["a@b.c"]\n')
    with pytest.raises(AccessConfigError, match="unknown role 'wizard'"):
        Policy.load(bad)
    bad.write_text("[roles]\nartist = 3\n")
    with pytest.raises(AccessConfigError, match="roles.artist must be a list"):
        Policy.load(bad)
    with pytest.raises(AccessConfigError, match="not found"):
        Policy.load(tmp_path / "missing.toml")
    good = tmp_path / "good.toml"
    good.write_text('[roles]\nadmin = ["Lead@Studio.test"]\nmarketing = ["@studio.test"]\nops = ["group:SRE"]\n')
    policy = Policy.load(good)
    lead = policy.identity({"email": "lead@studio.test"})
    assert lead.roles == {"admin", "marketing"} and lead.may("library.remove")
    sre = policy.identity({"sub": "x", "groups": ["sre"]})
    assert sre.roles == {"ops"} and sre.may("ops.load_test") and not sre.may("clips.analyse")
    assert policy.identity({"email": "eve@studio.test.evil"}).roles == frozenset()
    assert policy.expired({"exp": time.time() - 1}) and not policy.expired({"exp": time.time() + 60})
