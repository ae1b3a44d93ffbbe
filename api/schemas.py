"""Request and response bodies of the chat endpoints."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from agents.chat import TurnResult
from agents.safety.verdict import Verdict
from agents.state import ContextDocument

SNIPPET_CHARS = 240
ThreadId = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,128}$"),
    Field(description="1-128 letters, digits or . _ : -; send it again to continue the conversation"),
]


class RequestBody(BaseModel):
    """A request body: each field takes its own JSON type only (no `false` for 0, no 1 for true), as the
    schema says; pydantic's lax mode would convert them silently."""

    model_config = ConfigDict(strict=True)


class ChatRequest(RequestBody):
    # A misspelt or unsupported field is the client's mistake to hear about, not to have silently ignored.
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"message": "How do I ingest my own documents?"}]})

    message: str = Field(
        min_length=1, description="the user's message (at most api.max_message_chars)",
        json_schema_extra={"pattern": r"\S"},  # not blank: what the validator below enforces
    )
    thread_id: ThreadId | None = Field(None, description="omit to start a new conversation")

    @field_validator("message")
    @classmethod
    def _not_blank(cls, message: str) -> str:
        if not message.strip():
            raise ValueError("the message is blank; send some text")
        return message


class Source(BaseModel):
    index: int = Field(description="the number the answer cites, as [index]")
    source: str = Field(description="the file, relative to the folder it was ingested from where recorded")
    title: str
    citation: str = Field(description='where the passage is: "guide.md > Setup > Install", "manual.pdf, page 3"')
    score: float = Field(description="cosine similarity to the question")
    snippet: str

    @classmethod
    def from_document(cls, document: ContextDocument) -> Source:
        text = " ".join(document["text"].split())
        snippet = text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1].rstrip() + "…"
        return cls(index=document["index"], source=document["source"], title=document["title"],
                   citation=document.get("citation") or document["source"],
                   score=round(document["score"], 4), snippet=snippet)


class Safety(BaseModel):
    request: Verdict
    response: Verdict | None = Field(description="null when the request was refused before generation")
    refused: bool

    @classmethod
    def from_turn(cls, turn: TurnResult) -> Safety:
        return cls(request=turn.request_verdict, response=turn.response_verdict, refused=turn.refused)


class ChatResponse(BaseModel):
    answer: str
    thread_id: str
    message_id: str = Field(description="the answer's id in the conversation")
    sources: list[Source]
    safety: Safety
    route: list[str] = Field(
        description="the graph nodes this turn visited, in order; with agent.workflow 'agentic', a deciding "
        "node's verdict follows a colon (route_turn:knowledge, grade:kept=2/4, rewrite_query:attempt=1, "
        "check_grounding:supported=1/2)"
    )

    @classmethod
    def from_turn(cls, turn: TurnResult) -> ChatResponse:
        return cls(
            answer=turn.answer,
            thread_id=turn.thread_id,
            message_id=turn.message_id,
            sources=[Source.from_document(document) for document in turn.documents],
            safety=Safety.from_turn(turn),
            route=turn.route,
        )


class TokenData(BaseModel):
    text: str


class RetractData(BaseModel):
    replacement: str = Field(description="show this instead of the text streamed so far")


class StreamError(BaseModel):
    detail: str
    code: str


class ErrorBody(BaseModel):
    detail: str = Field(description="what went wrong and what to do about it")
    code: str = Field(description="machine-readable, e.g. unauthorized, rate_limited, overloaded")


class FieldError(BaseModel):
    field: str
    reason: str


class ValidationErrorBody(ErrorBody):
    errors: list[FieldError]


class Health(BaseModel):
    status: str
    detail: str | None = None
