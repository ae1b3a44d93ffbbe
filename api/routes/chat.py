"""The chat endpoints: one JSON answer, or the answer streamed as Server-Sent Events.

A conversation is a thread kept by the service; it belongs to the API key that started it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.sse import ServerSentEvent

from agents.chat import DoneEvent, RetractEvent, TokenEvent
from api.deps import AgentDep, ServiceDep, SettingsDep, TurnCallerDep, TurnSlotDep
from api.errors import InvalidRequest, client_error
from api.openapi import TURN_ERRORS, error_responses
from api.schemas import ChatRequest, ChatResponse, RetractData, StreamError, TokenData
from api.streaming import WatchedEventSourceResponse
from api.turn_runner import run_turn, stream_turn

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["chat"], responses=error_responses(*TURN_ERRORS, 404))


async def checked_request(body: ChatRequest, settings: SettingsDep) -> ChatRequest:
    """The body, within the configured message size (a setting, so not in the static schema)."""
    limit = settings.api.max_message_chars
    if len(body.message) > limit:
        raise InvalidRequest("message", f"at most {limit} characters allowed, got {len(body.message)}")
    return body


ChatRequestDep = Annotated[ChatRequest, Depends(checked_request)]


async def owned_thread(request: ChatRequestDep, caller: TurnCallerDep, agent: AgentDep) -> str:
    """The request's thread (a new id if it names none), checked before any answer, a stream's included:
    another key's thread is a 404, exactly like a thread that does not exist."""
    if request.thread_id is None:
        return str(uuid.uuid4())
    await agent.check_owner(request.thread_id, caller.id)
    return request.thread_id


ThreadDep = Annotated[str, Depends(owned_thread)]


@router.post("/chat")
async def chat(
    request: ChatRequestDep, caller: TurnCallerDep, thread_id: ThreadDep, agent: AgentDep, service: ServiceDep,
    _slot: None = TurnSlotDep,
) -> ChatResponse:
    """Answer one user message; `thread_id` continues a conversation (a new one is made if absent)."""
    turn = await run_turn(service, agent, request.message, thread_id=thread_id, owner=caller.id)
    return ChatResponse.from_turn(turn)


@router.post("/chat/stream", response_class=WatchedEventSourceResponse)
async def chat_stream(
    request: ChatRequestDep, caller: TurnCallerDep, thread_id: ThreadDep, agent: AgentDep, service: ServiceDep,
    _slot: None = TurnSlotDep,
) -> AsyncIterator[ServerSentEvent]:
    """Events: `token` {text}*, then `retract` {replacement} if the answer failed the output check,
    then one `done` with the same body as POST /v1/chat (its `answer` is authoritative).
    A failure after the stream has started ends it with an `error` {detail, code} event.
    """
    try:
        events = stream_turn(service, agent, request.message, thread_id=thread_id, owner=caller.id)
        async for event in events:
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
