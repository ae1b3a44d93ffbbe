"""Bodies of the OpenAI-compatible endpoints (the subset of the Chat Completions API a chat client uses).

What the service adds travels in `x_rag`, a field standard clients ignore.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.schemas import Safety, Source


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class InputMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant"] = Field(
        description="system/developer messages are accepted and ignored: the service's own instructions apply"
    )
    content: str | list[TextPart] | None = None
    name: str | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class StreamOptions(BaseModel):
    include_usage: bool = False


class CompletionRequest(BaseModel):
    # Clients send many optional fields (logprobs, user, seed...); unknown ones are ignored, as OpenAI does.
    model_config = ConfigDict(extra="ignore")

    model: str = Field(description="any name; answered by the served model (GET /v1/models)")
    messages: list[InputMessage] = Field(
        min_length=1, description="the conversation; the last one must be the user's (at most api.max_messages)"
    )
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Literal[1] = Field(1, description="one choice only")
    # Accepted for compatibility; the service's configured decoding (model.*) decides.
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    user: str | None = None

    @field_validator("messages")
    @classmethod
    def _ends_with_a_user_message(cls, messages: list[InputMessage]) -> list[InputMessage]:
        if messages[-1].role != "user":
            raise ValueError("the last message must have role 'user'")
        if not messages[-1].text.strip():
            raise ValueError("the last user message is blank; send some text")
        return messages


class RagDetails(BaseModel):
    """The service's extras: what the answer drew on, the safety verdicts, the graph's route."""

    message_id: str
    thread_id: str | None = Field(None, description="always null here: the request's messages are the memory")
    sources: list[Source]
    safety: Safety
    route: list[str]
    answer: str = Field(description="the authoritative answer (differs from streamed text after a retraction)")


class OutputMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


FinishReason = Literal["stop", "content_filter"]


class Choice(BaseModel):
    index: int = 0
    message: OutputMessage
    finish_reason: FinishReason = Field(description="content_filter when the service refused")


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    x_rag: RagDetails


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: FinishReason | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    x_rag: RagDetails | None = Field(None, description="on the last chunk only")


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "aligned-rag"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
