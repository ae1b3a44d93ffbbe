"""Every error the service returns, mapped to a JSON response in one place.

Body: `{"detail": "<what went wrong and what to do>", "code": "<machine-readable>"}` (+ `errors` for
validation). The client never sees a stack trace; unexpected errors are logged with theirs.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agents.chat import ThreadNotFound
from agents.generation import GenerationError, GeneratorUnavailable
from retrieval.store import VectorStoreError

logger = logging.getLogger(__name__)

class ApiError(Exception):
    """An error with its HTTP status and a message the client can act on."""

    status_code = 500
    code = "internal_error"

    def __init__(self, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        self.extra: dict[str, object] = {}  # more fields of the error body


class InvalidRequest(ApiError):
    """A body that passed the schema's static checks but not a configured limit: a 422 shaped like
    the schema validator's own (its `errors` list included)."""

    status_code = 422
    code = "invalid_request"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.extra = {"errors": [{"field": field, "reason": reason}]}


class Unauthorized(ApiError):
    status_code = 401
    code = "unauthorized"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, {"WWW-Authenticate": "Bearer"})


class Forbidden(ApiError):
    status_code = 403
    code = "forbidden"


class RateLimited(ApiError):
    status_code = 429
    code = "rate_limited"


class NotReady(ApiError):
    status_code = 503
    code = "not_ready"


class Overloaded(ApiError):
    status_code = 503
    code = "overloaded"


class GenerationTimeout(ApiError):
    status_code = 504
    code = "generation_timeout"


# Errors from the layers below, with what the client is told (the first matching type wins: subclasses first).
_PROJECT_ERRORS: dict[type[Exception], tuple[int, str, str]] = {
    GeneratorUnavailable: (503, "generator_unavailable", "the model server is unavailable; retry later"),
    GenerationError: (500, "generation_failed", "the model failed to generate an answer; try again"),
    ThreadNotFound: (404, "thread_not_found", "no such conversation for this API key; omit thread_id to start one"),
    VectorStoreError: (503, "knowledge_base_unavailable", "the knowledge base is unavailable; retry later"),
}
_UNEXPECTED = (500, "internal_error", "internal error; the server log has the details")
UNAVAILABLE_RETRY_AFTER_S = 5


def client_error(exc: Exception) -> tuple[int, str, str]:
    """(status, code, detail) the client is told about `exc`; also used once a stream has started."""
    if isinstance(exc, ApiError):
        return exc.status_code, exc.code, exc.detail
    for error_type, answer in _PROJECT_ERRORS.items():
        if isinstance(exc, error_type):
            return answer
    return _UNEXPECTED


def error_body(status_code: int, code: str, detail: str, **extra: object) -> JSONResponse:
    return JSONResponse(status_code=status_code, content={"detail": detail, "code": code, **extra})


def describe_validation_errors(exc: RequestValidationError) -> tuple[str, list[dict[str, str]]]:
    errors = [
        {"field": ".".join(str(p) for p in err["loc"] if p != "body") or "body", "reason": err["msg"]}
        for err in exc.errors()
    ]
    return "; ".join(f"{e['field']}: {e['reason']}" for e in errors), errors


def install_error_handlers(app: FastAPI) -> None:
    """Call before adding other middleware, so those (the access log) see the mapped responses."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        response = error_body(*client_error(exc), **exc.extra)
        response.headers.update(exc.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail, errors = describe_validation_errors(exc)
        if any(err["type"] == "json_invalid" for err in exc.errors()):
            return error_body(400, "malformed_json", f"the request body is not valid JSON ({detail})")
        return error_body(422, "invalid_request", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = error_body(exc.status_code, f"http_{exc.status_code}", str(exc.detail))
        response.headers.update(exc.headers or {})  # e.g. a 405's Allow
        return response

    app.add_middleware(UnhandledErrorMiddleware)


class UnhandledErrorMiddleware:
    """Anything unexpected becomes a JSON error and one log line with its trace. A middleware, not an exception
    handler: Starlette re-raises what reaches its Exception handler, and uvicorn would log every failure a second
    time. Plain ASGI, so a streamed answer's chunks pass straight through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_watched)
        except Exception as exc:
            if started:  # the status is already sent: uvicorn logs it and closes the connection
                raise
            logger.error("%s on %s %s", type(exc).__name__, scope["method"], scope["path"], exc_info=exc)
            status_code, code, detail = client_error(exc)
            response = error_body(status_code, code, detail)
            if status_code == 503:  # a part below is down for now: say when to retry, as the schema declares
                response.headers["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER_S)
            await response(scope, receive, send)
