"""The translation page at ``GET /`` and offline API docs at ``GET /docs``.

The page is three static files in ``serve/web/static`` (HTML, CSS, plain JavaScript) that talk to the
same JSON API as any client. LitServe answers ``/`` with "litserve running" and FastAPI's
``/docs`` loads Swagger UI from a CDN, which an offline server cannot reach: both routes are
replaced here, the docs with the Swagger UI files the ``fastapi-offline`` package ships (FastAPI's
documented self-hosting of the docs assets). Neither route needs the API key: the page asks for it
and sends it with each API call, and the docs hold no data.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import FileResponse, HTMLResponse
from starlette.routing import BaseRoute, Mount, Route

PAGE_DIR = Path(__file__).parent / "static"
PAGE_PREFIX = "/static"  # the page's CSS and JavaScript
DOCS_PREFIX = "/static/docs"  # Swagger UI's files
# The page runs no inline script and loads nothing from elsewhere; the browser enforces both.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def swagger_dir() -> Path:
    """Swagger UI's JavaScript and CSS, as installed with ``fastapi-offline``."""
    return Path(str(files("fastapi_offline") / "static"))


def _serves(route: BaseRoute, path: str) -> bool:
    return isinstance(route, Route | Mount) and route.path == path


def install_web(app: FastAPI, page: bool = True) -> None:
    """Serve the page at ``/`` (unless ``page`` is False: ``--disable-web-ui``) and Swagger UI at
    ``/docs`` from local files (call before ``run``)."""
    replaced = {"/", app.docs_url, app.swagger_ui_oauth2_redirect_url}
    app.router.routes[:] = [r for r in app.router.routes if not any(_serves(r, p) for p in replaced)]
    app.docs_url = "/docs"
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    # the more specific mount first: Starlette takes the first route that matches
    app.mount(DOCS_PREFIX, StaticFiles(directory=swagger_dir()), name="docs-assets")
    if page:
        app.mount(PAGE_PREFIX, StaticFiles(directory=PAGE_DIR), name="page-assets")

        @app.get("/", include_in_schema=False)
        async def index() -> FileResponse:
            return FileResponse(PAGE_DIR / "index.html", headers=PAGE_HEADERS)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=oauth2_redirect_url,
            swagger_js_url=f"{DOCS_PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_PREFIX}/favicon.png",
        )

    @app.get(oauth2_redirect_url, include_in_schema=False)
    async def docs_oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
