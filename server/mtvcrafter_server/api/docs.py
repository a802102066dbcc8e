"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), whose scripts, style sheet and icon this server serves itself
(under ``/docs/assets/``), so that both pages work without internet. The files are those of the
``fastapi-offline`` package (a dependency of the ``server`` extra); FastAPI's own pages load them from a CDN.

The pages, their files and ``/openapi.json`` go through the Host and Origin checks of the API but need no token
(:data:`.security.OPEN_PATHS`): a browser cannot send one when it opens a page. The schema declares the token as the
``bearer`` scheme, so Swagger UI shows Authorize and sends the token given there with the requests it makes.
Without the package the server still starts (with a warning), and the pages answer 503 saying what to install.
"""

from __future__ import annotations

import logging
from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from .errors import ApiError

log = logging.getLogger("mtvcrafter_server")

ASSETS_URL = "/docs/assets"
#: the files the pages load, and their content types
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}


MISSING = (
    "the files of the /docs and /redoc pages are missing: pip install 'fastapi-offline>=1.7,<2' "
    "(part of the server extra: pip install 'mtvcrafter[server]')"
)


def assets_folder() -> Path | None:
    """Where the files are (None when they are not)."""
    try:
        folder = Path(str(files("fastapi_offline") / "static"))
    except ModuleNotFoundError:
        return None
    return folder if all((folder / name).is_file() for name in ASSETS) else None


def add_docs(app: FastAPI) -> None:
    """The two pages and their assets; create the app with ``docs_url=None, redoc_url=None``."""
    router = APIRouter(include_in_schema=False)
    folder = assets_folder()
    if folder is None:
        log.warning("%s; /docs and /redoc answer 503 until then", MISSING)

        @router.get("/docs")
        @router.get("/redoc")
        @router.get(ASSETS_URL + "/{name}")
        async def docs_unavailable() -> None:
            raise ApiError(503, "docs_unavailable", MISSING)

        app.include_router(router)
        return

    def asset(request: Request, name: str) -> str:
        return f"{request.scope.get('root_path', '')}{ASSETS_URL}/{name}"

    @router.get("/docs", response_class=HTMLResponse)
    async def swagger_ui(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=f"{request.scope.get('root_path', '')}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=asset(request, "swagger-ui-bundle.js"),
            swagger_css_url=asset(request, "swagger-ui.css"),
            swagger_favicon_url=asset(request, "favicon.png"),
            oauth2_redirect_url=None,  # the API's one scheme is a bearer token, no OAuth2 flow
            # no badge from the online validator (an image loaded from elsewhere)
            swagger_ui_parameters={"validatorUrl": None},
        )

    @router.get("/redoc", response_class=HTMLResponse)
    async def redoc(request: Request) -> HTMLResponse:
        return get_redoc_html(
            openapi_url=f"{request.scope.get('root_path', '')}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=asset(request, "redoc.standalone.js"),
            redoc_favicon_url=asset(request, "favicon.png"),
            with_google_fonts=False,
        )

    @router.get(ASSETS_URL + "/{name}")
    async def docs_asset(name: str) -> FileResponse:
        if name not in ASSETS:
            raise ApiError(404, "not_found", f"no docs asset {name[:64]!r}")
        return FileResponse(folder / name, media_type=ASSETS[name], headers={"Cache-Control": "public, max-age=3600"})

    app.include_router(router)


__all__ = ["ASSETS", "ASSETS_URL", "add_docs"]
