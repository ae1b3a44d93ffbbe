"""The web chat page at / and the API docs, every asset served from this process (no CDN: works offline)."""

from __future__ import annotations

from pathlib import Path

import swagger_ui_bundle
from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
SWAGGER_PREFIX = "/static/swagger"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def chat_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html")


@router.get("/docs")
async def docs() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="Aligned RAG chat: API",
        swagger_js_url=f"{SWAGGER_PREFIX}/swagger-ui-bundle.js",
        swagger_css_url=f"{SWAGGER_PREFIX}/swagger-ui.css",
        swagger_favicon_url=f"{SWAGGER_PREFIX}/favicon-32x32.png",
    )


def mount_static(app: FastAPI) -> None:
    # The more specific mount first: /static/swagger is the swagger-ui-bundle package's own folder.
    app.mount(SWAGGER_PREFIX, StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="swagger")
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
