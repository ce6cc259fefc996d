"""``/docs`` and ``/redoc`` work offline: their scripts, styles and icon come from the package.

In a headless Chromium that may fetch nothing but this machine, each page shows the API's title
and an operation, and tried to fetch nothing elsewhere (a CDN or Google's fonts would be refused
and recorded). Over plain HTTP, every file the pages name answers 200 with its content type.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ledger.api import docs_ui
from ledger.testing.stripe import StripeStandIn
from tests.browser import BrowserPage
from tests.ledger.api.conftest import standin_settings
from tests.ledger.api.live import live_server

REPO_ROOT = Path(__file__).resolve().parents[3]
TITLE = "Credit Ledger"
#: An operation of API.md, as each page shows it.
PATH = "/v1/accounts/{account}/balance"
SUMMARY = "Balance"


@pytest.fixture(scope="module")
def live(database_url: str, redis_url: str, stripe_standin: StripeStandIn) -> Iterator[str]:
    with live_server(database_url, redis_url, **standin_settings(stripe_standin)) as base:
        yield base


def test_swagger_ui_renders_offline(browser_page: BrowserPage, live: str) -> None:
    page = browser_page.page
    page.goto(f"{live}/docs")
    page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)
    assert TITLE in page.locator(".swagger-ui .info .title").inner_text()
    assert page.locator(".opblock-summary-path", has_text=PATH).count() >= 1
    browser_page.screenshot("swagger-ui")
    assert browser_page.blocked == [], "the page tried to fetch from another host"
    assert browser_page.errors == []


def test_redoc_renders_offline(browser_page: BrowserPage, live: str) -> None:
    page = browser_page.page
    page.goto(f"{live}/redoc")
    # The operations render after the title: wait for one's heading.
    page.wait_for_function("s => [...document.querySelectorAll('redoc h2')].some(h => h.innerText.trim() === s)",
                           arg=SUMMARY, timeout=30_000)
    assert TITLE in page.locator("redoc h1").first.inner_text()
    browser_page.screenshot("redoc", full_page=False)  # the whole document is a 7 MB image
    assert browser_page.blocked == [], "the page tried to fetch from another host"
    assert browser_page.errors == []


#: What each page loads, with the content type it must answer with.
ASSETS = {
    docs_ui.SWAGGER_JS: ("text/javascript", "application/javascript"),
    docs_ui.SWAGGER_CSS: ("text/css",),
    docs_ui.FAVICON: ("image/png",),
    docs_ui.REDOC_JS: ("text/javascript", "application/javascript"),
}


def _urls(html: str) -> set[str]:
    return set(re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)) | set(
        re.findall(r"""url:\s*['"]([^'"]+)['"]""", html)) | set(re.findall(r'spec-url="([^"]+)"', html))


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_pages_name_only_files_of_this_server(live: str, page: str) -> None:
    r = httpx.get(f"{live}{page}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    urls = _urls(r.text)
    assert urls, r.text
    assert [u for u in urls if not u.startswith("/")] == [], "a page names another host"
    assert urls - {"/openapi.json"} <= set(ASSETS), urls


@pytest.mark.parametrize("url", sorted(ASSETS))
def test_each_file_answers_with_its_content_type(live: str, url: str) -> None:
    r = httpx.get(f"{live}{url}")
    assert r.status_code == 200, r.text[:200]
    assert r.headers["content-type"].split(";")[0] in ASSETS[url]
    assert len(r.content) > 500


def test_an_unknown_file_is_a_404(live: str) -> None:
    r = httpx.get(f"{live}{docs_ui.ASSETS_URL}/swagger-ui/nothing.js")
    assert r.status_code == 404


def test_the_redoc_bundle_no_longer_names_redoclys_cdn() -> None:
    """Its side menu's logo is an empty image here (docs_assets/SOURCES.txt): an update that loses that change fails."""
    bundle = (docs_ui.ASSETS_DIR / "redoc" / "redoc.standalone.js").read_text(encoding="utf-8")
    assert "cdn.redoc.ly" not in bundle
    assert bundle.count("data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' width='1' height='1'/%3E") == 1


def test_every_file_and_licence_ships_in_the_package() -> None:
    """pyproject.toml's package data takes each file under docs_assets (a wheel without them serves blank pages)."""
    patterns = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["ledger"]
    ledger_dir = REPO_ROOT / "ledger"
    packaged = {path for pattern in patterns for path in ledger_dir.glob(pattern) if path.is_file()}
    files = {path for path in docs_ui.ASSETS_DIR.rglob("*") if path.is_file()}
    assert files - packaged == set()
    names = {str(path.relative_to(docs_ui.ASSETS_DIR)) for path in files}
    assert {"swagger-ui/LICENSE", "redoc/LICENSE", "SOURCES.txt"} <= names
    assert {url.removeprefix(docs_ui.ASSETS_URL + "/") for url in ASSETS} <= names
