"""Prometheus metrics (text exposition format), behind the API key like the chat routes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import CallerDep, ServiceDep
from api.openapi import AUTH_ERRORS, error_responses

router = APIRouter(tags=["observability"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "metrics"},
               **error_responses(*AUTH_ERRORS)},
)
async def metrics(caller: CallerDep, service: ServiceDep) -> Response:
    """Requests by route and status, latencies, tokens generated, refusals by category and stage,
    queue depth, generator busy time."""
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)
