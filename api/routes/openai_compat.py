"""OpenAI-compatible endpoints: existing clients (the `openai` package, LangChain's ChatOpenAI) work unchanged.

A request's messages are the conversation: nothing is stored between requests. The service's extras
(sources, safety verdicts, route, message id) travel in `x_rag`.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from pydantic import BaseModel

from agents.chat import DoneEvent, RetractEvent, TokenEvent, TurnResult
from api.deps import AgentDep, CallerDep, ServiceDep, SettingsDep, TurnCallerDep, TurnSlotDep
from api.errors import InvalidRequest, client_error
from api.openai_schemas import (
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChunkChoice,
    CompletionRequest,
    Delta,
    ModelCard,
    ModelList,
    OutputMessage,
    RagDetails,
    content_texts,
)
from api.openapi import AUTH_ERRORS, TURN_ERRORS, error_responses
from api.schemas import Safety, Source
from api.streaming import WatchedStreamingResponse
from api.turn_runner import run_turn, stream_turn

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["openai-compatible"])
STARTED_AT = int(time.time())
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no proxy buffering (nginx)
# One event of the stream, as FastAPI describes its own Server-Sent Events (OpenAPI 3.2's itemSchema).
SSE_EVENT = {"type": "object", "required": ["data"],
             "properties": {"data": {"type": "string", "description": "a ChatCompletionChunk, then [DONE]"}}}


@router.get("/models", responses=error_responses(*AUTH_ERRORS))
async def list_models(caller: CallerDep, settings: SettingsDep) -> ModelList:
    """The one model this service answers with."""
    return ModelList(data=[ModelCard(id=settings.api.model_id, created=STARTED_AT)])


async def checked_completion(body: CompletionRequest, settings: SettingsDep) -> CompletionRequest:
    """The body within the configured limits (settings, so the schema gets them in api/openapi.py)."""
    api = settings.api
    if len(body.messages) > api.max_messages:
        raise InvalidRequest("messages", f"at most {api.max_messages} allowed, got {len(body.messages)}")
    for index, message in enumerate(body.messages):
        for text in content_texts(message.content):
            if len(text) > api.max_message_chars:
                raise InvalidRequest(f"messages.{index}.content",
                                     f"at most {api.max_message_chars} characters allowed, got {len(text)}")
    return body


CompletionDep = Annotated[CompletionRequest, Depends(checked_completion)]


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses={200: {"content": {"text/event-stream": {"itemSchema": SSE_EVENT}},
                     "description": "a ChatCompletion, or with stream: true, `data: <ChatCompletionChunk>` "
                                    "events ended by `data: [DONE]`"},
               **error_responses(*TURN_ERRORS)},
)
async def chat_completions(
    body: CompletionDep, caller: TurnCallerDep, agent: AgentDep, service: ServiceDep, _slot: None = TurnSlotDep,
):
    """Answer the last user message after the earlier ones (system messages are ignored: the service's
    safety instructions apply). Sampling fields are accepted and ignored: the configured decoding applies."""
    earlier, last = body.question()
    history = _history(earlier)
    model = service.settings.api.model_id
    if not body.stream:
        turn = await run_turn(service, agent, last.text, thread_id=None, owner=caller.id, history=history)
        return ChatCompletion(
            id=_completion_id(turn.message_id), created=int(time.time()), model=model,
            choices=[Choice(message=OutputMessage(content=turn.answer), finish_reason=_finish_reason(turn))],
            x_rag=_details(turn),
        )
    events = stream_turn(service, agent, last.text, thread_id=None, owner=caller.id, history=history)
    return WatchedStreamingResponse(_sse(events, model), media_type="text/event-stream", headers=SSE_HEADERS)


async def _sse(events: AsyncIterator, model: str) -> AsyncIterator[str]:
    """Chunks as OpenAI streams them. A retraction can't take back streamed text: its replacement follows
    the text, the finish reason is content_filter and x_rag.answer holds the authoritative answer."""
    created = int(time.time())
    stream_id = _completion_id(uuid.uuid4().hex)

    def chunk(delta: Delta, finish: str | None = None, details: RagDetails | None = None) -> str:
        body = ChatCompletionChunk(id=stream_id, created=created, model=model,
                                   choices=[ChunkChoice(delta=delta, finish_reason=finish)], x_rag=details)
        return _event(body)

    yield chunk(Delta(role="assistant", content=""))
    try:
        async for event in events:
            if isinstance(event, TokenEvent):
                yield chunk(Delta(content=event.text))
            elif isinstance(event, RetractEvent):
                yield chunk(Delta(content=f"\n\n{event.replacement}"))
            elif isinstance(event, DoneEvent):
                yield chunk(Delta(), _finish_reason(event.result), _details(event.result))
    except Exception as exc:  # the 200 status is already sent: report the failure as OpenAI does
        logger.error("completion stream failed", exc_info=exc)
        _, code, detail = client_error(exc)
        yield f"data: {json.dumps({'error': {'message': detail, 'type': code, 'code': code}})}\n\n"
    yield "data: [DONE]\n\n"


def _event(body: BaseModel) -> str:
    return f"data: {body.model_dump_json()}\n\n"


def _history(messages) -> list[AnyMessage]:
    kinds = {"user": HumanMessage, "assistant": AIMessage}
    return [kinds[m.role](content=m.text) for m in messages if m.role in kinds]


def _completion_id(key: str) -> str:
    return f"chatcmpl-{key}"


def _finish_reason(turn: TurnResult) -> str:
    return "content_filter" if turn.refused else "stop"


def _details(turn: TurnResult) -> RagDetails:
    return RagDetails(message_id=turn.message_id, thread_id=turn.thread_id,
                      sources=[Source.from_document(document) for document in turn.documents],
                      safety=Safety.from_turn(turn), route=turn.route, answer=turn.answer)
