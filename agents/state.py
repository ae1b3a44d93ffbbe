"""The graph's state: the conversation (kept across turns by the checkpointer) and this turn's work."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, NotRequired, TypedDict

from langchain_core.messages import AnyMessage, HumanMessage
from langgraph.graph.message import add_messages

from agents.arrival_order import Place
from agents.safety.verdict import Verdict


class ContextDocument(TypedDict):
    """A retrieved chunk as the prompt numbers it and the API cites it."""

    index: int  # 1-based, the number the answer cites as [index]
    id: str
    source: str
    title: str
    citation: str  # source with heading path or page: "docs/guide.md > Setup", "manual.pdf, page 3"
    heading: NotRequired[str]  # the section's heading path ("Setup > Install"): Markdown and DOCX only
    score: float
    text: str


@dataclass(kw_only=True)
class AgentState:
    """Only `messages` accumulates across turns (add_messages: append, or replace by message id).

    The per-turn fields are reset by the input of every turn (`turn_input`), since the checkpointer
    would otherwise carry the previous turn's documents, verdicts and route into this one.
    """

    messages: Annotated[list[AnyMessage], add_messages] = field(default_factory=list)
    documents: list[ContextDocument] = field(default_factory=list)
    request_verdict: Verdict | None = None
    response_verdict: Verdict | None = None
    route: list[str] = field(default_factory=list)  # the nodes this turn visited, in order
    owner: str | None = None  # the caller who created the thread; only they may continue it


@dataclass(frozen=True)
class TurnContext:
    """Per-turn run context (LangGraph `context=`), never checkpointed.

    `cancelled` is set when the caller stops listening (a streaming client went away): the generate
    node then stops the model at its next token instead of finishing an answer nobody will read.
    `place`: the turn's place in arrival order, where the model runs one generation at a time (None: no order).
    """

    cancelled: threading.Event = field(default_factory=threading.Event)
    place: Place | None = None


def turn_input(message: str, *, owner: str | None = None, history: Sequence[AnyMessage] = ()) -> dict:
    """The graph input for one user turn (after `history`, for a turn whose caller keeps the history)."""
    return {
        "messages": [*history, HumanMessage(content=message, id=str(uuid.uuid4()))],
        "owner": owner,
        "documents": [],
        "request_verdict": None,
        "response_verdict": None,
        "route": [],
    }
