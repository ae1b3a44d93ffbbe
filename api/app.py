"""The FastAPI application factory."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response

from api.errors import install_error_handlers
from api.routes import chat, health
from api.service import AgentStarter, ServiceState, start_agent
from configs.settings import AppSettings

logger = logging.getLogger(__name__)

PROBE_PATHS = frozenset({"/healthz", "/readyz"})


def create_app(settings: AppSettings, *, starter: AgentStarter = start_agent) -> FastAPI:
    """The service. `starter` builds the agent in the background after startup (tests pass their own)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = ServiceState(settings, starter)
        app.state.service = service
        service.start()
        try:
            yield
        finally:
            await service.close()

    app = FastAPI(
        title="Aligned RAG chat",
        description="Safety-aligned chat with retrieval over the knowledge base.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(chat.router)
    app.middleware("http")(_log_requests)
    return app


async def _log_requests(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """One access-log line per request, with a request id (echoed as X-Request-ID) and the latency.

    Probes are logged at DEBUG: an orchestrator polls them every few seconds. For a stream the latency
    is the time to its first byte; the agent logs the whole turn.
    """
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
    started = time.perf_counter()
    response = await call_next(request)
    response.headers["X-Request-ID"] = request_id
    logger.log(
        logging.DEBUG if request.url.path in PROBE_PATHS else logging.INFO,
        "%s %s %d", request.method, request.url.path, response.status_code,
        extra={"request_id": request_id, "status": response.status_code,
               "latency_ms": round((time.perf_counter() - started) * 1000, 1)},
    )
    return response
