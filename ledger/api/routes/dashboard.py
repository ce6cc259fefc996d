"""The dashboard: ``GET /dashboard`` and its files, all shipped in the package (no CDN, works offline).

The page is static: its scripts call the API with the account key the user enters (kept in the
browser's session storage, never in a URL). Only files present in the package directory are
served (a fixed list read at import), so no path can reach anything else. A Content-Security-Policy
lets the page load scripts, styles and data from this server only.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import Response

from ledger.errors import NotFound

router = APIRouter(include_in_schema=False)

ROOT = Path(__file__).resolve().parent.parent / "static" / "dashboard"
VENDOR = ROOT / "vendor"

TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".md": "text/plain; charset=utf-8",
         ".LICENSE": "text/plain; charset=utf-8"}

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
       " base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-cache"}


def _files(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in folder.iterdir() if p.is_file() and p.suffix in TYPES}


FILES = _files(ROOT)
VENDOR_FILES = _files(VENDOR)


def _serve(files: dict[str, Path], name: str) -> Response:
    path = files.get(name)
    if path is None:
        raise NotFound(f"the dashboard has no file {name!r}")
    return Response(path.read_bytes(), media_type=TYPES[path.suffix], headers=HEADERS)


@router.get("/dashboard")
async def dashboard() -> Response:
    """The dashboard page."""
    return _serve(FILES, "index.html")


@router.get("/dashboard/{asset}")
async def asset(asset: str) -> Response:
    """One of the dashboard's scripts or styles."""
    return _serve(FILES, asset)


@router.get("/dashboard/vendor/{asset}")
async def vendor_asset(asset: str) -> Response:
    """A vendored file (the chart library and its licence)."""
    return _serve(VENDOR_FILES, asset)
