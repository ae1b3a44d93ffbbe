"""Liveness (/healthz) and readiness (/readyz) probes; never behind the API key."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import ServiceDep
from api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> Health:
    """The process is up and serving HTTP (models may still be loading)."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(service: ServiceDep) -> JSONResponse | Health:
    """200 once the models are loaded and the graph is built; 503 before, or if loading failed."""
    if service.agent is not None:
        return Health(status="ready")
    status = Health(status="failed", detail=service.failure) if service.failure else Health(status="loading")
    return JSONResponse(status_code=503, content=status.model_dump())
