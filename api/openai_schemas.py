"""Bodies of the OpenAI-compatible endpoints (the subset of the Chat Completions API a chat client uses).

What the service adds travels in `x_rag`, a field standard clients ignore.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from api.schemas import RequestBody, Safety, Source

NOT_BLANK = r"\S"  # what the validators below check with str.strip(), for the schema


def _integral_number(value: object) -> object:
    """JSON has one number type: 3.0 is the integer 3. Strict mode would refuse it (as it refuses true, "3")."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# Constraints before the validator, or pydantic writes them into the schema as "ge", which no client reads.
PositiveInt = Annotated[int, Field(ge=1), BeforeValidator(_integral_number)]


class TextPart(RequestBody):
    type: Literal["text"]
    text: str = Field(description="at most api.max_message_chars characters")


Content = str | list[TextPart]


def content_texts(content: Content | None) -> list[str]:
    """The texts of a message's content: the string, or each text part's."""
    if content is None:
        return []
    return [content] if isinstance(content, str) else [part.text for part in content]


class _Message(RequestBody):
    role: str
    content: Content | None = None
    name: str | None = None

    @property
    def text(self) -> str:
        return "".join(content_texts(self.content))


class UserMessage(_Message):
    role: Literal["user"]
    # Not blank: a string with a non-space character, or parts of which one has text.
    content: (
        Annotated[str, Field(json_schema_extra={"pattern": NOT_BLANK})]
        | Annotated[list[TextPart], Field(min_length=1, json_schema_extra={
            "contains": {"type": "object", "properties": {"text": {"type": "string", "pattern": NOT_BLANK}},
                         "required": ["text"]}})]
    ) = Field(description="the message's text (at most api.max_message_chars characters a string or part)")

    @field_validator("content")
    @classmethod
    def _not_blank(cls, content: Content) -> Content:
        if not "".join(content_texts(content)).strip():
            raise ValueError("the user message is blank; send some text")
        return content


class OtherMessage(_Message):
    role: Literal["system", "developer", "assistant"] = Field(
        description="system/developer messages are accepted and ignored: the service's own instructions apply"
    )


InputMessage = Annotated[UserMessage | OtherMessage, Field(discriminator="role")]


class StreamOptions(RequestBody):
    include_usage: bool = False


class CompletionRequest(RequestBody):
    # Clients send many optional fields (logprobs, user, seed...); unknown ones are ignored, as OpenAI does.
    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [
        {"model": "aligned-rag", "messages": [{"role": "user", "content": "How do I change the port?"}]},
    ]})

    model: str = Field(description="any name; answered by the served model (GET /v1/models)")
    messages: list[InputMessage] = Field(
        min_length=1,
        description="the conversation (at most api.max_messages): the last user message is the question, the "
        "messages before it its history; messages after it are ignored",
        json_schema_extra={"contains": {"type": "object", "properties": {"role": {"const": "user"}},
                                        "required": ["role"]}},
    )
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Annotated[int, Field(ge=1, le=1), BeforeValidator(_integral_number)] = Field(
        1, description="one choice only"
    )
    # Accepted for compatibility; the service's configured decoding (model.*) decides.
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    max_tokens: PositiveInt | None = None
    max_completion_tokens: PositiveInt | None = None
    user: str | None = None

    @field_validator("messages")
    @classmethod
    def _has_a_user_message(cls, messages: list[_Message]) -> list[_Message]:
        if not any(message.role == "user" for message in messages):
            raise ValueError("no message has role 'user': the last one is the question")
        return messages

    def question(self) -> tuple[list[_Message], UserMessage]:
        """The messages before the last user message, and that message."""
        index = max(i for i, message in enumerate(self.messages) if message.role == "user")
        return self.messages[:index], self.messages[index]  # type: ignore[return-value]


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
