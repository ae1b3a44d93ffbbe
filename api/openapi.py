"""What the OpenAPI schema says about errors, and the configured limits it reports."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api.schemas import ErrorBody, ValidationErrorBody
from configs.settings import AppSettings

_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
_DESCRIPTIONS: dict[int, str] = {
    400: "the body is not valid JSON",
    401: "missing or invalid API key",
    403: "development mode: the request did not come from this machine",
    404: "no such conversation for this API key",
    413: "the body is larger than api.max_body_bytes",
    415: "the body is not application/json",
    422: "the body does not match the schema",
    429: "the key's rate limit is reached",
    503: "models still loading, the turn queue is full, or the model server or knowledge base is unavailable",
    504: "the turn ran past api.generation_timeout_s",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status with its body schema (and Retry-After where sent)."""
    responses: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entry: dict[str, Any] = {"model": ValidationErrorBody if code == 422 else ErrorBody,
                                 "description": _DESCRIPTIONS[code]}
        if code in (429, 503):
            entry["headers"] = _RETRY_AFTER
        responses[code] = entry
    return responses


AUTH_ERRORS = (401, 403)
TURN_ERRORS = (400, *AUTH_ERRORS, 413, 415, 422, 429, 503, 504)


def install_openapi(app: FastAPI, settings: AppSettings) -> None:
    """The schema, with the limits that are settings (so not in the static models) filled in."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            _errors_are_json(schema)
            components = schema["components"]["schemas"]
            components["ChatRequest"]["properties"]["message"]["maxLength"] = settings.api.max_message_chars
            components["CompletionRequest"]["properties"]["messages"]["maxItems"] = settings.api.max_messages
            contents = [components[message]["properties"]["content"] for message in ("UserMessage", "OtherMessage")]
            texts = [s for content in contents for s in content["anyOf"] if s.get("type") == "string"]
            for text_schema in (*texts, components["TextPart"]["properties"]["text"]):
                text_schema["maxLength"] = settings.api.max_message_chars
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _errors_are_json(schema: dict[str, Any]) -> None:
    """FastAPI files a route's error bodies under the route's own media type (text/event-stream for a
    stream); every error is a JSON body (api/errors.py), sent before any stream starts."""
    for operations in schema["paths"].values():
        for operation in operations.values():
            for status, response in operation["responses"].items():
                if int(status) >= 400 and "content" in response:
                    body = next(iter(response["content"].values()))
                    response["content"] = {"application/json": body}
