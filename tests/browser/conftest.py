"""Browser fixtures: Debian's Chromium driven by Playwright, pages, and a second origin."""

from __future__ import annotations

import http.server
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

CHROMIUM = Path(os.environ.get("LIBRARY_CHROMIUM", "/usr/bin/chromium"))
# Flags Chromium needs in a container: no sandbox, no GPU, and no background traffic.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WEB_DIST = Path(__file__).resolve().parents[2] / "web" / "dist"
WAIT_MS = 10_000


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test in this folder as a browser test."""
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.browser)


# Package scope: Playwright's sync API keeps an event loop running in this
# thread, which must be gone before the asyncio tests of other packages run.
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    """Playwright's driver; it uses the system Chromium, never a downloaded browser."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    if not (WEB_DIST / "index.html").exists():
        pytest.fail(f"the web page is not built ({WEB_DIST}): run 'make web'")
    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """One headless Chromium; Playwright gives it a fresh, temporary user-data dir."""
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
    )
    yield browser
    browser.close()


OpenPage = Callable[..., Page]


@pytest.fixture
def open_page(browser: Browser) -> Iterator[OpenPage]:
    """Opens a URL in a new browser context (its own storage: a separate visitor)."""
    contexts: list[BrowserContext] = []

    def open_(url: str, *, width: int = 1100, height: int = 900) -> Page:
        context = browser.new_context(viewport={"width": width, "height": height})
        context.set_default_timeout(WAIT_MS)
        contexts.append(context)
        page = context.new_page()
        page.goto(url)
        return page

    yield open_
    for context in contexts:
        context.close()


class StaticOrigin:
    """A plain HTTP server on another loopback port: a second origin serving a copy of the page."""

    def __init__(self, root: Path) -> None:
        self._root = root
        shutil.copytree(WEB_DIST, root, dirs_exist_ok=True)
        handler = partial(_QuietHandler, directory=str(root))
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def point_at(self, api_url: str) -> None:
        """Make the copied page call the API at ``api_url``."""
        index = self._root / "index.html"
        html = index.read_text()
        index.write_text(
            html.replace('name="library-api" content=""', f'name="library-api" content="{api_url}"')
        )

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output clean."""


@pytest.fixture
def second_origin(tmp_path: Path) -> Iterator[StaticOrigin]:
    """A second origin (another port on 127.0.0.1) serving the page."""
    origin = StaticOrigin(tmp_path / "site")
    yield origin
    origin.stop()
