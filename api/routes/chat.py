"""The chat endpoints: one JSON answer, or the answer streamed as Server-Sent Events."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.sse import EventSourceResponse, ServerSentEvent

from agents.chat import DoneEvent, RetractEvent, TokenEvent
from api.deps import AgentDep, ApiKeyDep, SettingsDep
from api.errors import InvalidRequest, client_error
from api.schemas import ChatRequest, ChatResponse, RetractData, StreamError, TokenData

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["chat"], dependencies=[ApiKeyDep])


def checked_request(body: ChatRequest, settings: SettingsDep) -> ChatRequest:
    """The body, within the configured message size (a setting, so not in the static schema)."""
    limit = settings.api.max_message_chars
    if len(body.message) > limit:
        raise InvalidRequest(f"message: at most {limit} characters allowed, got {len(body.message)}")
    return body


ChatRequestDep = Annotated[ChatRequest, Depends(checked_request)]


@router.post("/chat")
async def chat(request: ChatRequestDep, agent: AgentDep) -> ChatResponse:
    """Answer one user message; `thread_id` continues a conversation (a new one is made if absent)."""
    turn = await agent.ask(request.message, request.thread_id or str(uuid.uuid4()))
    return ChatResponse.from_turn(turn)


@router.post("/chat/stream", response_class=EventSourceResponse)
async def chat_stream(request: ChatRequestDep, agent: AgentDep) -> AsyncIterator[ServerSentEvent]:
    """Events: `token` {text}*, then `retract` {replacement} if the answer failed the output check,
    then one `done` with the same body as POST /v1/chat (its `answer` is authoritative).
    A failure after the stream has started ends it with an `error` {detail, code} event.
    """
    thread_id = request.thread_id or str(uuid.uuid4())
    try:
        async for event in agent.stream(request.message, thread_id):
            if isinstance(event, TokenEvent):
                yield ServerSentEvent(event="token", data=TokenData(text=event.text))
            elif isinstance(event, RetractEvent):
                yield ServerSentEvent(event="retract", data=RetractData(replacement=event.replacement))
            elif isinstance(event, DoneEvent):
                yield ServerSentEvent(event="done", data=ChatResponse.from_turn(event.result))
    except Exception as exc:  # the 200 status is already sent: report the failure as an event
        logger.error("stream failed for thread %s", thread_id, exc_info=exc)
        _, code, detail = client_error(exc)
        yield ServerSentEvent(event="error", data=StreamError(detail=detail, code=code))
