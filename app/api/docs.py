"""The API's own pages, offline: /docs is Swagger UI (5.x: OpenAPI 3.1) served from the static files
of the fastapi-offline package instead of a CDN, /openapi.json the document, /redoc and / redirect.

These are FastAPI routes (not Starlette's plain ones), so the metrics count them under their own
path instead of 'unmatched'."""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse

from app.api.metrics import route_paths

router = APIRouter(include_in_schema=False)

STATIC = Path(fastapi_offline.__file__).resolve().parent / "static"
#: the files /docs needs, and their media types (nothing else of the package is served)
FILES = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css", "favicon.png": "image/png"}
CONSOLE = "/console"


@router.get("/openapi.json")
async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/docs")
async def docs(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return get_swagger_ui_html(
        openapi_url=f"{root}/openapi.json", title=f"{request.app.title} — API docs",
        swagger_js_url=f"{root}/docs/static/swagger-ui-bundle.js",
        swagger_css_url=f"{root}/docs/static/swagger-ui.css",
        swagger_favicon_url=f"{root}/docs/static/favicon.png",
        # no validator badge (it calls validator.swagger.io); the key typed in stays for the session
        swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": False, "tryItOutEnabled": True})


@router.api_route("/docs/static/{name}", methods=["GET", "HEAD"])
async def docs_static(name: str) -> FileResponse:
    if name not in FILES:
        raise HTTPException(404)
    return FileResponse(STATIC / name, media_type=FILES[name], headers={"Cache-Control": "public, max-age=86400"})


@router.get("/redoc")
async def redoc(request: Request) -> RedirectResponse:
    """ReDoc is not served (its bundle loads a logo from a CDN): the same document is at /docs."""
    return RedirectResponse(f"{request.scope.get('root_path', '')}/docs", status_code=307)


@router.get("/")
async def home(request: Request) -> RedirectResponse:
    """To the console when the app has one, else to the API docs."""
    has_console = any(p == CONSOLE or p.startswith(f"{CONSOLE}/") for p in route_paths(request.app))
    return RedirectResponse(f"{request.scope.get('root_path', '')}{CONSOLE if has_console else '/docs'}",
                            status_code=307)
