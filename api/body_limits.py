"""Request bodies are checked before anything parses them: JSON only (415) and at most N bytes (413).

An ASGI middleware, so an oversized body is refused from its Content-Length, or, when chunked, after
reading at most N + 1 bytes of it: never read and parsed in full.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        declared = headers.get("content-length", "")
        if declared in ("", "0") and "transfer-encoding" not in headers:
            await self.app(scope, receive, send)  # no body: routing and validation answer (405, 422)
            return
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            found = f"'{media_type}'" if media_type else "none"
            await _refuse(send, 415, "unsupported_media_type",
                          f"send the body as JSON with 'Content-Type: application/json' (got {found})")
            return
        if declared.isdigit() and int(declared) > self.max_bytes:
            await _refuse(send, 413, "body_too_large", self._too_large(int(declared)))
            return
        # Chunked or unknown length: read it here, up to the limit, then replay it to the app.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await _refuse(send, 413, "body_too_large", self._too_large(size, at_least=True))
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    def _too_large(self, size: int, *, at_least: bool = False) -> str:
        amount = f"at least {size}" if at_least else str(size)
        return f"the request body is {amount} bytes; at most {self.max_bytes} allowed (api.max_body_bytes)"


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the client's disconnect, as the server would

    return replay


async def _refuse(send: Send, status: int, code: str, detail: str) -> None:
    body = json.dumps({"detail": detail, "code": code}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
