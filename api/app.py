"""The FastAPI application factory."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware

from api.auth import KeyStore
from api.body_limits import BodyLimitMiddleware
from api.errors import install_error_handlers
from api.logs import request_id
from api.openapi import install_openapi
from api.routes import chat, health, metrics, openai_compat, web
from api.service import AgentStarter, ServiceState, start_agent
from configs.settings import AppSettings

logger = logging.getLogger(__name__)

PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# A client's X-Request-ID is reused only if it is short and plain (it goes into every log line).
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


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
    app.middleware("http")(_log_requests)
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


async def _log_requests(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """One access-log line per request, with a request id (echoed as X-Request-ID) and the latency;
    the request's count and latency go to the metrics under its route template.

    Probes and scrapes are logged at DEBUG: they come every few seconds. For a stream the latency is the
    time to its first byte; the agent logs the whole turn.
    """
    presented = request.headers.get("x-request-id", "")
    rid = presented if _CLIENT_REQUEST_ID.match(presented) else uuid.uuid4().hex
    token = request_id.set(rid)
    started = time.perf_counter()
    try:
        response = await call_next(request)
    finally:
        request_id.reset(token)
    elapsed = time.perf_counter() - started
    response.headers["X-Request-ID"] = rid
    route = request.scope.get("route")
    route_label = getattr(route, "path", "unmatched")
    service: ServiceState | None = getattr(request.app.state, "service", None)
    if service is not None:
        service.metrics.requests.labels(route_label, request.method, str(response.status_code)).inc()
        service.metrics.latency.labels(route_label, request.method).observe(elapsed)
    logger.log(
        logging.DEBUG if request.url.path in PROBE_PATHS else logging.INFO,
        "%s %s %d", request.method, request.url.path, response.status_code,
        extra={"request_id": rid, "status": response.status_code, "route": route_label,
               "caller": getattr(request.state, "caller_id", None),
               "latency_ms": round(elapsed * 1000, 1)},
    )
    return response
