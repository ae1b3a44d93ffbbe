"""One access-log line per request, with a request id (echoed as X-Request-ID) and the latency; the request's
count and latency go to the metrics under its route template.

A plain ASGI middleware: a streamed answer's chunks pass straight through. Starlette's `@app.middleware("http")`
relays every chunk through a memory stream and a task of its own, which at thousands of streamed tokens a second
cost the service more than the rest of the turn.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.logs import request_id

logger = logging.getLogger(__name__)

PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# A client's X-Request-ID is reused only if it is short and plain (it goes into every log line).
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class AccessLogMiddleware:
    """Probes and scrapes are logged at DEBUG: they come every few seconds. For a stream the latency is the time
    to its first byte; the agent logs the whole turn."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        presented = Headers(scope=scope).get("x-request-id", "")
        rid = presented if _CLIENT_REQUEST_ID.match(presented) else uuid.uuid4().hex
        started = time.perf_counter()

        async def send_logged(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("X-Request-ID", rid)
                _record(scope, message["status"], time.perf_counter() - started, rid)
            await send(message)

        token = request_id.set(rid)
        try:
            await self.app(scope, receive, send_logged)
        finally:
            request_id.reset(token)


def _record(scope: Scope, status: int, elapsed: float, rid: str) -> None:
    route_label = getattr(scope.get("route"), "path", "unmatched")  # the router's match, set as it routed
    service = getattr(scope["app"].state, "service", None)
    if service is not None:
        service.metrics.requests.labels(route_label, scope["method"], str(status)).inc()
        service.metrics.latency.labels(route_label, scope["method"]).observe(elapsed)
    logger.log(
        logging.DEBUG if scope["path"] in PROBE_PATHS else logging.INFO,
        "%s %s %d", scope["method"], scope["path"], status,
        extra={"request_id": rid, "status": status, "route": route_label,
               "caller": scope.get("state", {}).get("caller_id"), "latency_ms": round(elapsed * 1000, 1)},
    )
