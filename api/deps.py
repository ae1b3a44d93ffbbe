"""Dependencies of the routes, as Annotated aliases: settings, the agent, the API-key check."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from agents.chat import ChatAgent
from api.errors import NotReady, Unauthorized
from api.service import ServiceState
from configs.settings import AppSettings

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <api key>")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="or X-API-Key: <api key>")


def get_service(request: Request) -> ServiceState:
    return request.app.state.service


ServiceDep = Annotated[ServiceState, Depends(get_service)]


def get_settings(service: ServiceDep) -> AppSettings:
    return service.settings


SettingsDep = Annotated[AppSettings, Depends(get_settings)]


def get_agent(service: ServiceDep) -> ChatAgent:
    if service.agent is None:
        reason = f"the agent failed to load ({service.failure})" if service.failure else "models are loading"
        raise NotReady(f"{reason}; retry when GET /readyz answers 200")
    return service.agent


AgentDep = Annotated[ChatAgent, Depends(get_agent)]


def require_api_key(
    settings: SettingsDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header_key: Annotated[str | None, Depends(_api_key_header)],
) -> None:
    """With api.api_keys set, every chat call must carry one of them; with none set, the API is open."""
    keys = settings.api.api_keys
    if not keys:
        return
    presented = bearer.credentials if bearer else header_key
    if presented is None:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
    if not any(secrets.compare_digest(presented.encode(), key.encode()) for key in keys):
        raise Unauthorized("invalid API key")


ApiKeyDep = Depends(require_api_key)
