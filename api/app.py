"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api.access_log import AccessLogMiddleware
from api.auth import KeyStore
from api.body_limits import BodyLimitMiddleware
from api.errors import install_error_handlers
from api.openapi import install_openapi
from api.routes import chat, health, metrics, openai_compat, web
from api.service import AgentStarter, ServiceState, start_agent
from configs.settings import AppSettings


def create_app(settings: AppSettings, *, starter: AgentStarter = start_agent) -> FastAPI:
    """The service. `starter` builds the agent in the background after startup (tests pass their own).

    Raises ConfigError when no API key is configured outside development mode.
    """
    keys = KeyStore.from_settings(settings.api)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = ServiceState(settings, starter, keys)
        app.state.service = service
        service.start()
        try:
            yield
        finally:
            await service.close()

    app = FastAPI(
        title="Aligned RAG chat",
        description="Safety-aligned chat with retrieval over the knowledge base. Every route but the probes "
        "needs an API key (`Authorization: Bearer <key>`), except in local development mode.",
        lifespan=lifespan,
        docs_url=None,  # served by routes/web.py from local assets
        redoc_url=None,
    )
    # Innermost first: bodies are checked before anything parses them; errors are mapped before the
    # access log sees them; CORS (when configured) wraps everything, error responses included.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.api.max_body_bytes)
    install_error_handlers(app)
    app.add_middleware(AccessLogMiddleware)
    if settings.api.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.api.cors_origins,
                           allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type",
                                                                         "X-API-Key", "X-Request-ID"],
                           expose_headers=["X-Request-ID", "Retry-After"])
    for router in (health.router, chat.router, openai_compat.router, metrics.router, web.router):
        app.include_router(router)
    web.mount_static(app)
    install_openapi(app, settings)
    return app
