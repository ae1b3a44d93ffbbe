"""The web pages: the chat page at `/` and the API docs (Swagger UI), every asset served from this process
(no CDN: both work offline)."""

from __future__ import annotations

import json
from pathlib import Path

import swagger_ui_bundle
from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from agents.safety.verdict import HAZARD_CATEGORIES

SWAGGER_PREFIX = "/static/swagger"
CHAT_PREFIX = "/static/chat"
STATIC_DIR = Path(__file__).resolve().parents[1] / "static"  # index.html, and chat/ with its scripts and style
# The page renders model output and server messages as text only; the policy keeps it that way even if a bug
# slipped one into HTML: nothing but this origin's own scripts, styles and requests.
CHAT_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                               "form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

router = APIRouter(include_in_schema=False)


def _chat_page() -> str:
    """index.html with the hazard names filled in, so a refusal can say "S9 indiscriminate weapons"."""
    hazards = json.dumps(HAZARD_CATEGORIES).replace("<", "\\u003c")  # cannot close the <script> it sits in
    return (STATIC_DIR / "index.html").read_text().replace("{{HAZARD_CATEGORIES}}", hazards)


CHAT_PAGE = _chat_page()


@router.get("/")
async def chat_page() -> HTMLResponse:
    return HTMLResponse(CHAT_PAGE, headers=CHAT_PAGE_HEADERS)


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
    # The swagger-ui-bundle package's own folder of Swagger UI assets, and the chat page's scripts and style.
    app.mount(SWAGGER_PREFIX, StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="swagger")
    app.mount(CHAT_PREFIX, StaticFiles(directory=STATIC_DIR / "chat"), name="chat")
