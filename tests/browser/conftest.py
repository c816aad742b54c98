"""The browser tests' fixtures: Debian's chromium (never a downloaded browser) driven by Playwright, and the real
local stack served over HTTP with a Bearer key, as a deployment has one."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run"]
API_KEY = "console-browser-test-key"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "out" / "screenshots"


@pytest.fixture(autouse=True)
def _api_key(monkeypatch):
    """The server reads its key per request; the root conftest clears it before each test, so it is set here."""
    monkeypatch.setenv("DATA_PIPELINE_API_KEY", API_KEY)


@pytest.fixture(scope="module")
def keyed_api(pipeline_stack):
    """The API on real HTTP (a free port) on the module's local stack; this client sends the key."""
    from tests.support.http_api import served

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DATA_PIPELINE_API_KEY", API_KEY)
        with served(pipeline_stack, api_key=API_KEY) as client:
            yield client


@pytest.fixture(scope="module")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium (make test runs it first)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def tab(browser):
    context = browser.new_context(viewport={"width": 1360, "height": 900}, accept_downloads=True)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.page_errors = errors  # type: ignore[attr-defined]
    yield tab
    context.close()


def shoot(tab, name: str) -> Path:
    """A full-page screenshot under out/screenshots/ (the run writes one per page and state)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    tab.screenshot(path=str(path), full_page=True)
    return path
