"""``/docs`` (Swagger UI) and ``/redoc`` from the package's own copies of their scripts and styles.

FastAPI's default pages load them from a CDN (and ReDoc its fonts from Google), so without internet
they are blank. These are FastAPI's pages with local URLs ("self-hosting JavaScript and CSS for
docs"); the files, pinned and with their licences, are under ``docs_assets/`` (see its SOURCES.txt).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_DIR = Path(__file__).resolve().parent / "docs_assets"
#: Where the files are served (a prefix no API route uses).
ASSETS_URL = "/docs/assets"
SWAGGER_UI_VERSION = "5.36.0"  # npm swagger-ui-dist
REDOC_VERSION = "2.5.4"  # npm redoc

SWAGGER_JS = f"{ASSETS_URL}/swagger-ui/swagger-ui-bundle.js"
SWAGGER_CSS = f"{ASSETS_URL}/swagger-ui/swagger-ui.css"
FAVICON = f"{ASSETS_URL}/swagger-ui/favicon-32x32.png"
REDOC_JS = f"{ASSETS_URL}/redoc/redoc.standalone.js"


def install(app: FastAPI, *, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Serve the two pages and their files on ``app`` (made with ``docs_url=None, redoc_url=None``)."""
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect_url = f"{docs_url}/oauth2-redirect"
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url, title=f"{app.title} - Swagger UI", oauth2_redirect_url=oauth2_redirect_url,
            swagger_js_url=SWAGGER_JS, swagger_css_url=SWAGGER_CSS, swagger_favicon_url=FAVICON,
            # Swagger UI would send the document to validator.swagger.io for its badge.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(oauth2_redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(redoc_url, include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=openapi_url, title=f"{app.title} - ReDoc", redoc_js_url=REDOC_JS,
                              redoc_favicon_url=FAVICON, with_google_fonts=False)
