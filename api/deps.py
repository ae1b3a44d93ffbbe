"""Dependencies of the routes, as Annotated aliases: settings, the agent, the caller, rate limit, turn queue.

All `async def`: none of them blocks, and FastAPI runs a plain `def` dependency on its thread pool, a round trip
through another thread for each of them on every request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from agents.chat import ChatAgent
from api.auth import DEV_CALLER_ID, Caller
from api.errors import Forbidden, NotReady, Overloaded, RateLimited, Unauthorized
from api.ratelimit import retry_after_header
from api.service import ServiceState
from api.turns import QueueFull
from configs.settings import AppSettings

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <api key>")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="or X-API-Key: <api key>")

LOOPBACK = frozenset({"127.0.0.1", "::1"})
# A full queue drains at about one turn per few seconds on CPU: a short wait is the honest hint.
QUEUE_RETRY_AFTER_S = 2


async def get_service(request: Request) -> ServiceState:
    return request.app.state.service


ServiceDep = Annotated[ServiceState, Depends(get_service)]


async def get_settings(service: ServiceDep) -> AppSettings:
    return service.settings


SettingsDep = Annotated[AppSettings, Depends(get_settings)]


async def get_agent(service: ServiceDep) -> ChatAgent:
    if service.agent is None:
        reason = f"the agent failed to load ({service.failure})" if service.failure else "models are loading"
        raise NotReady(f"{reason}; retry when GET /readyz answers 200", {"Retry-After": "5"})
    return service.agent


AgentDep = Annotated[ChatAgent, Depends(get_agent)]


async def get_caller(
    request: Request,
    service: ServiceDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header_key: Annotated[str | None, Depends(_api_key_header)],
) -> Caller:
    """The caller behind the request's API key; in development mode, the one local caller."""
    if service.keys.dev_mode:
        client = request.client.host if request.client else None
        if client not in LOOPBACK:
            raise Forbidden("development mode serves this machine only; configure api.api_keys to serve others")
        return Caller(DEV_CALLER_ID)
    presented = bearer.credentials if bearer else header_key
    if not presented:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
    caller = service.keys.identify(presented)
    if caller is None:
        raise Unauthorized("invalid API key")
    request.state.caller_id = caller.id  # for the access log
    return caller


CallerDep = Annotated[Caller, Depends(get_caller)]


async def rate_limited_caller(caller: CallerDep, service: ServiceDep) -> Caller:
    wait = service.rate_limiter.acquire(caller.id)
    if wait > 0:
        service.metrics.rejected.labels("rate_limited").inc()
        limit = service.settings.api.rate_limit_per_minute
        raise RateLimited(f"rate limit of {limit} requests a minute reached; retry after {wait:.1f} s",
                          {"Retry-After": retry_after_header(wait)})
    return caller


async def turn_slot(service: ServiceDep) -> AsyncIterator[None]:
    """A place in the turn queue for the whole request, a streamed response included."""
    try:
        service.turns.admit()
    except QueueFull as exc:
        service.metrics.rejected.labels("queue_full").inc()
        raise Overloaded(f"the service is at capacity ({exc}); retry shortly",
                         {"Retry-After": str(QUEUE_RETRY_AFTER_S)}) from None
    service.metrics.queue_depth.set(service.turns.depth)
    try:
        yield
    finally:
        service.turns.release()
        service.metrics.queue_depth.set(service.turns.depth)


# A chat turn: authenticated, within the caller's rate, the agent loaded, a place in the queue.
TurnCallerDep = Annotated[Caller, Depends(rate_limited_caller)]
TurnSlotDep = Depends(turn_slot)
