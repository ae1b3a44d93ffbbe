"""One conversation turn through the compiled graph, whole (`ask`) or as a stream of events (`stream`)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agents.safety.verdict import Verdict
from agents.state import ContextDocument, TurnContext, turn_input

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TurnResult:
    thread_id: str
    answer: str
    documents: list[ContextDocument]
    request_verdict: Verdict
    response_verdict: Verdict | None  # None when the request was refused before generation
    route: list[str]

    @property
    def refused(self) -> bool:
        return not self.request_verdict.safe or (
            self.response_verdict is not None and not self.response_verdict.safe
        )


@dataclass(frozen=True)
class TokenEvent:
    text: str


@dataclass(frozen=True)
class RetractEvent:
    """The answer streamed so far failed the output check; show `replacement` instead."""

    replacement: str


@dataclass(frozen=True)
class DoneEvent:
    result: TurnResult


AgentEvent = TokenEvent | RetractEvent | DoneEvent


class ChatAgent:
    def __init__(self, graph: CompiledStateGraph, prompt_version: str) -> None:
        self.graph = graph
        self.prompt_version = prompt_version

    async def ask(self, message: str, thread_id: str) -> TurnResult:
        started = time.perf_counter()
        state = await self.graph.ainvoke(turn_input(message), _config(thread_id))
        return self._finish(thread_id, state, started)

    async def stream(self, message: str, thread_id: str) -> AsyncIterator[AgentEvent]:
        """Events of one turn. Closing this iterator early (client gone) stops the generation too."""
        started = time.perf_counter()
        context = TurnContext()
        state: dict[str, Any] = {}
        try:
            async for mode, chunk in self.graph.astream(
                turn_input(message), _config(thread_id), context=context, stream_mode=["custom", "values"]
            ):
                if mode == "values":
                    state = chunk
                elif chunk["type"] == "token":
                    yield TokenEvent(chunk["text"])
                elif chunk["type"] == "retract":
                    yield RetractEvent(chunk["replacement"])
        finally:
            # The generate node runs in a worker thread, which cancelling the graph does not stop.
            context.cancelled.set()
        yield DoneEvent(self._finish(thread_id, state, started))

    def _finish(self, thread_id: str, state: dict[str, Any], started: float) -> TurnResult:
        result = TurnResult(
            thread_id=thread_id,
            answer=state["messages"][-1].text,
            documents=state["documents"],
            request_verdict=state["request_verdict"],
            response_verdict=state["response_verdict"],
            route=state["route"],
        )
        logger.info(
            "turn done",
            extra={
                "thread_id": thread_id,
                "route": result.route,
                "refused": result.refused,
                "sources": len(result.documents),
                "prompt_version": self.prompt_version,
                "latency_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
        return result


def _config(thread_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id}}
