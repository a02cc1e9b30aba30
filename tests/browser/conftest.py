"""Browser tests: the real app served over HTTP on loopback (same database and Redis as the other
tests) and driven by Playwright in Debian's chromium. Without chromium they are skipped loudly
outside CI and fail in CI (``CI`` or ``FLOWDESK_REQUIRE_BROWSER`` set)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

CHROMIUM = Path(os.environ.get("FLOWDESK_CHROMIUM", "/usr/bin/chromium"))
OUTPUT = Path(__file__).resolve().parents[2] / "test-output" / "browser"


@pytest.fixture(scope="session")
def live_server(app):
    """The session's app on a free loopback port, in a thread; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture(scope="session")
def chromium():
    """A headless chromium for the session (skipped loudly, or failed in CI, when not installed)."""
    if not CHROMIUM.exists():
        message = f"BROWSER TESTS NOT RUN: {CHROMIUM} is missing (apt-get install chromium)"
        if os.environ.get("CI") or os.environ.get("FLOWDESK_REQUIRE_BROWSER"):
            pytest.fail(message)
        print(f"\n!!! {message}\n")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def output_dir(request) -> Path:
    """This test's output folder (screenshots)."""
    folder = OUTPUT / request.node.name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def open_page(chromium, live_server):
    """Factory: a fresh browser context (own cookies) at a viewport, with console errors collected."""
    contexts = []

    def make(width: int = 1280, height: int = 900, locale: str = "en-GB"):
        context = chromium.new_context(viewport={"width": width, "height": height}, base_url=live_server,
                                       locale=locale)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.errors = []
        page.on("pageerror", lambda err: page.errors.append(str(err)))
        return page

    yield make
    for context in contexts:
        context.close()


def sign_in(page, username: str, password: str = "password-123") -> None:
    """Use the login page like a person would."""
    page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
