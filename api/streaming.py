"""Streaming responses that end a turn as soon as its client disconnects, not at the next write.

Under ASGI 2.4 servers (uvicorn) Starlette notices a disconnect only when a write fails. A turn can be silent for
seconds (a grounding check, a regeneration that is checked before it is shown), and all that time the model
would keep working for a client that has left. Listening for `http.disconnect` beside the stream, as Starlette
does for older servers, cancels the stream at once; the turn's cleanup then stops the generator.
"""

from __future__ import annotations

import contextlib

import anyio
from fastapi.responses import StreamingResponse
from fastapi.sse import EventSourceResponse
from starlette.types import Receive, Scope, Send


class _StopsOnDisconnect(StreamingResponse):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        async with anyio.create_task_group() as group:

            async def stream() -> None:
                with contextlib.suppress(OSError):  # the client left while a chunk was being written
                    await self.stream_response(send)
                group.cancel_scope.cancel()

            group.start_soon(stream)
            await self.listen_for_disconnect(receive)
            group.cancel_scope.cancel()
        if self.background is not None:
            await self.background()


class WatchedStreamingResponse(_StopsOnDisconnect):
    """A StreamingResponse that stops when the client disconnects (the OpenAI-compatible stream)."""


class WatchedEventSourceResponse(_StopsOnDisconnect, EventSourceResponse):
    """FastAPI's SSE response class that stops when the client disconnects (POST /v1/chat/stream)."""
