"""The API docs (Swagger UI), every asset served from this process (no CDN: works offline)."""

from __future__ import annotations

import swagger_ui_bundle
from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

SWAGGER_PREFIX = "/static/swagger"

router = APIRouter(include_in_schema=False)


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
    # The swagger-ui-bundle package's own folder of Swagger UI assets.
    app.mount(SWAGGER_PREFIX, StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="swagger")
