"""The browser harness itself: a page on the system's Chromium, offline but for this machine, with screenshots."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.browser import SCREENSHOTS, BrowserPage, open_page, require_chromium

PAGE = b"""<!doctype html><title>harness</title>
<link rel="stylesheet" href="https://cdn.example.com/style.css">
<h1 id="greeting">waiting</h1>
<script src="/local.js"></script>
<script src="https://cdn.example.com/lib.js"></script>
"""
SCRIPT = b"document.getElementById('greeting').textContent = 'hello from 127.0.0.1';"


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body, kind = (SCRIPT, "text/javascript") if self.path == "/local.js" else (PAGE, "text/html")
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_a_page_runs_local_scripts_and_is_refused_everything_else(browser_page: BrowserPage, site: str) -> None:
    page = browser_page.page
    page.goto(site)
    assert page.inner_text("#greeting") == "hello from 127.0.0.1"
    assert sorted(browser_page.blocked) == ["https://cdn.example.com/lib.js", "https://cdn.example.com/style.css"]
    shot = browser_page.screenshot("loaded")
    assert shot.parent == SCREENSHOTS and shot.read_bytes().startswith(b"\x89PNG")


def test_the_page_is_kept_as_a_screenshot_when_the_test_fails(site: str) -> None:
    final = SCREENSHOTS / "harness-failing-final.png"
    final.unlink(missing_ok=True)
    with pytest.raises(AssertionError), open_page("harness failing") as opened:
        opened.page.goto(site)
        raise AssertionError("the test's own failure")
    assert final.read_bytes().startswith(b"\x89PNG")


def test_no_chromium_fails_the_test_with_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match="apt-get install chromium"):
        require_chromium(tmp_path / "chromium")
