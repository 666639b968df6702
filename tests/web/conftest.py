"""Browser tests: a real ``yuekang serve`` on 127.0.0.1 (SQLite, development keys) driven by
Debian's Chromium through Playwright. Playwright never downloads a browser here: it is given
``/usr/bin/chromium`` (``apt-get install chromium``; scripts/test installs it).

Screenshots land in ``test-artifacts/screenshots/`` for people to look at."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.servers import Server, serve, server_env

CHROMIUM = os.environ.get("YUEKANG_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium keeps dialling Google, which this machine
# refuses; --no-sandbox because CI runs as root.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts" / "screenshots"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/web/" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not (shutil.which(CHROMIUM) or Path(CHROMIUM).exists()):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (scripts/test does)")
    return CHROMIUM


@pytest.fixture(scope="module")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A development server of its own (SQLite, keys made on first run) for a test module."""
    workdir = tmp_path_factory.mktemp("web")
    env = server_env(f"sqlite+aiosqlite:///{workdir / 'web.db'}", workdir / "keys")
    with serve(env, workdir, "web") as server:
        yield server


@pytest.fixture(scope="session")
def playwright_instance() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        yield playwright


def launch(playwright: object, chromium_path: str, *extra: str) -> object:
    """A headless Chromium; ``extra`` adds flags (a fake camera, say)."""
    return playwright.chromium.launch(  # type: ignore[attr-defined]
        executable_path=chromium_path, headless=True, args=[*CHROMIUM_ARGS, *extra]
    )


@pytest.fixture(scope="module")
def browser(playwright_instance: object, chromium_path: str) -> Iterator[object]:
    browser = launch(playwright_instance, chromium_path)
    yield browser
    browser.close()  # type: ignore[attr-defined]


def screenshot(page: object, name: str) -> Path:
    """Save a full-page screenshot as a test artifact; its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    return path


def wait_until(page: object, expression: str, timeout: float = 15.0) -> object:
    """Poll ``expression`` (a JavaScript function source) in the page until it is truthy; its value.

    Playwright's ``wait_for_function`` evaluates its predicate with ``eval`` inside the page,
    which our content security policy forbids (as it should); ``evaluate`` is not affected."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(expression)  # type: ignore[attr-defined]
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout} s: {expression}")
        time.sleep(0.1)
