"""A real headless Chromium for the tests that need a browser (Debian's ``chromium``, driven by Playwright).

Tests take the ``browser_page`` fixture (this module is a pytest plugin of ``tests/conftest.py``), or
open :func:`open_page` themselves to name their screenshots or allow other hosts. Every page is offline:
a request to anything but this machine is refused and recorded in ``BrowserPage.blocked``, so a
test can assert that nothing was fetched from a CDN. Screenshots go to ``artifacts/screenshots/``
at the repository's root (git-ignored; CI keeps the directory): one of the page as the test left it,
whether it passed or failed, and any a test takes with :meth:`BrowserPage.screenshot`.

Never ``playwright install``: the browser is the system's. A test that needs it and finds none
fails (it does not skip): ``.ci/run`` installs it, and a developer needs it for these tests.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import ConsoleMessage, Error, Page, Request, Route, sync_playwright

REPO_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
#: Where screenshots are kept (``.gitignore`` lists ``artifacts/``).
SCREENSHOTS = REPO_ROOT / "artifacts" / "screenshots"
#: Headless, and no outbound connections of Chromium's own (updates, sync, field trials): without
#: the background-networking flags it tries them and logs every refusal.
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass
class BrowserPage:
    """A page in its own browser context, with what it tried to fetch elsewhere and what went wrong in it."""

    page: Page
    name: str
    #: URLs of every request to a host other than this machine (each was refused).
    blocked: list[str] = field(default_factory=list)
    #: Uncaught exceptions and ``console.error`` messages of the page's scripts.
    errors: list[str] = field(default_factory=list)
    screenshots: list[Path] = field(default_factory=list)

    def screenshot(self, label: str, *, full_page: bool = True) -> Path:
        """Save the page (all of it, or what the window shows) as ``<name>-<label>.png`` under
        :data:`SCREENSHOTS`; return its path."""
        path = SCREENSHOTS / f"{self.name}-{_slug(label)}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path), full_page=full_page)
        self.screenshots.append(path)
        return path


def require_chromium(path: Path = CHROMIUM) -> Path:
    """``path`` if it is an executable; else fail the test saying how to get one."""
    if not (path.is_file() and path.stat().st_mode & 0o111):
        pytest.fail(f"this test needs Chromium at {path}: install Debian's chromium package "
                    "(apt-get install chromium; .ci/run does it). `playwright install` is not used.", pytrace=False)
    return path


@contextmanager
def open_page(name: str, *, allow_hosts: frozenset[str] = LOCAL_HOSTS,
                 viewport: tuple[int, int] = (1280, 900)) -> Iterator[BrowserPage]:
    """A fresh page on the system's Chromium; requests to hosts outside ``allow_hosts`` are refused
    and recorded. On exit (passed or failed) the window is saved as ``<name>-final.png``."""
    executable = require_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(executable), headless=True, args=LAUNCH_ARGS)
        try:
            context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
            result = BrowserPage(context.new_page(), _slug(name))

            def guard(route: Route, request: Request) -> None:
                if urlsplit(request.url).hostname in allow_hosts:
                    route.continue_()
                else:
                    result.blocked.append(request.url)
                    route.abort("blockedbyclient")

            context.route("**/*", guard)
            result.page.on("pageerror", lambda exc: result.errors.append(f"uncaught: {exc}"))
            result.page.on("console", lambda msg: _console(result, msg))
            try:
                yield result
            finally:
                # A page that crashed has nothing to show; the test's own failure says why.
                with suppress(Error):
                    result.screenshot("final", full_page=False)
        finally:
            browser.close()


def _console(result: BrowserPage, message: ConsoleMessage) -> None:
    if message.type == "error":
        result.errors.append(f"console: {message.text}")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:120] or "page"


@pytest.fixture
def browser_page(request: pytest.FixtureRequest) -> Iterator[BrowserPage]:
    """A :class:`BrowserPage` (offline but for this machine) named after the test, so its screenshots say
    which test took them."""
    with open_page(request.node.nodeid.split("/")[-1]) as page:
        yield page
