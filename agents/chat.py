"""One conversation turn through the compiled graph, whole (`ask`) or as a stream of events (`stream`).

A turn either continues a stored thread (memory keyed by thread id, owned by whoever created it) or, with
no thread id, is stateless: the caller sends the earlier messages itself (the OpenAI-style API).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from langchain_core.messages import AnyMessage, RemoveMessage
from langgraph.graph.message import REMOVE_ALL_MESSAGES

from agents.arrival_order import ArrivalOrder
from agents.generation import GenerationStats
from agents.safety.verdict import Verdict
from agents.state import ContextDocument, TurnContext, turn_input

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph

logger = logging.getLogger(__name__)


class ThreadNotFound(LookupError):
    """No thread with this id belongs to the caller (another caller's thread looks the same: absent)."""


@dataclass(frozen=True)
class TurnResult:
    thread_id: str | None  # None for a stateless turn
    message_id: str  # the answer's id in the conversation
    answer: str
    documents: list[ContextDocument]
    request_verdict: Verdict
    response_verdict: Verdict | None  # None when the request was refused before generation
    route: list[str]
    # Seconds in each node of the graph, summed when a node ran more than once (a retrieval retry), as the
    # stream saw each task start and end.
    node_seconds: dict[str, float] = field(default_factory=dict)

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
    def __init__(
        self, graph: CompiledStateGraph, prompt_version: str, generation_stats: GenerationStats | None = None,
        arrival_order: ArrivalOrder | None = None,
    ) -> None:
        """`arrival_order`: where the model runs one generation at a time, turns take it in the order they came."""
        self.graph = graph
        self.generation_stats = generation_stats or GenerationStats()
        self.arrival_order = arrival_order
        # Stateless turns carry their own history: the same graph, nothing stored.
        self.stateless_graph = graph.copy(update={"checkpointer": None})
        self.prompt_version = prompt_version

    async def ask(
        self, message: str, thread_id: str | None, owner: str | None = None,
        history: Sequence[AnyMessage] = (),
    ) -> TurnResult:
        async for event in self.stream(message, thread_id, owner, history):
            if isinstance(event, DoneEvent):
                return event.result
        raise RuntimeError("the turn ended without a result")

    async def stream(
        self, message: str, thread_id: str | None, owner: str | None = None,
        history: Sequence[AnyMessage] = (),
    ) -> AsyncIterator[AgentEvent]:
        """Events of one turn. Closing this iterator early (client gone, time limit) stops the generation
        and removes the unfinished turn from the thread, so memory never holds a question without its answer.

        `thread_id` None: a stateless turn after `history`. Otherwise `owner` must own the thread (or the
        thread must be new); `history` is then the stored one.
        """
        started = time.perf_counter()
        stored = thread_id is not None and self.graph.checkpointer is not None
        if thread_id is not None:
            await self.check_owner(thread_id, owner)
        graph = self.graph if thread_id is not None else self.stateless_graph
        inputs = turn_input(message, owner=owner, history=history)
        question_id = inputs["messages"][-1].id
        context = TurnContext(place=self.arrival_order.arrive() if self.arrival_order is not None else None)
        state: dict[str, Any] = {}
        node_timer = NodeTimer()
        events = graph.astream(inputs, _config(thread_id), context=context,
                               stream_mode=["custom", "values", "tasks"])
        completed = False
        try:
            async for mode, chunk in events:
                if mode == "values":
                    state = chunk
                elif mode == "tasks":
                    node_timer.see(chunk)
                elif chunk["type"] == "token":
                    yield TokenEvent(chunk["text"])
                elif chunk["type"] == "retract":
                    yield RetractEvent(chunk["replacement"])
            completed = True
        except (asyncio.CancelledError, GeneratorExit):  # the caller left (a closed stream, a disconnect)
            logger.info("turn cancelled by the caller before its answer was done")
            raise
        finally:
            # The generate node runs in a worker thread, which cancelling the graph does not stop.
            context.cancelled.set()
            if context.place is not None:
                context.place.leave()
            await events.aclose()
            if stored and not completed:
                await asyncio.shield(self._forget_turn(thread_id, question_id))
        yield DoneEvent(self._finish(thread_id, state, started, node_timer.seconds))

    async def check_owner(self, thread_id: str, owner: str | None) -> None:
        """Raise ThreadNotFound unless the thread is new or `owner` created it."""
        if self.graph.checkpointer is None:
            return
        snapshot = await self.graph.aget_state(_config(thread_id))
        if snapshot.values and snapshot.values.get("owner") != owner:
            raise ThreadNotFound(f"no conversation {thread_id!r}; omit thread_id to start one")

    async def _forget_turn(self, thread_id: str, question_id: str) -> None:
        """Remove an unfinished turn's messages (the question, and an answer not yet checked, if any)."""
        config = _config(thread_id)
        messages = (await self.graph.aget_state(config)).values.get("messages", [])
        ids = [m.id for m in messages]
        if question_id not in ids:
            return
        kept = messages[: ids.index(question_id)]
        # Rewrite the list whole: removing by id from a checkpoint taken mid-step fails in LangGraph 1.x.
        await self.graph.aupdate_state(config, {"messages": [RemoveMessage(id=REMOVE_ALL_MESSAGES), *kept]})
        logger.info("unfinished turn removed from thread",
                    extra={"thread_id": thread_id, "messages": len(messages) - len(kept)})

    def _finish(self, thread_id: str | None, state: dict[str, Any], started: float,
                node_seconds: dict[str, float]) -> TurnResult:
        answer = state["messages"][-1]
        result = TurnResult(
            thread_id=thread_id,
            message_id=answer.id,
            answer=answer.text,
            documents=state["documents"],
            request_verdict=state["request_verdict"],
            response_verdict=state["response_verdict"],
            route=state["route"],
            node_seconds=node_seconds,
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


class NodeTimer:
    """Time in each graph node, from LangGraph's task events (`stream_mode="tasks"`: one when a task starts,
    with its input, one when it ends, with its result or error)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._started: dict[str, float] = {}

    def see(self, event: dict[str, Any]) -> None:
        now = time.perf_counter()
        if "input" in event:
            self._started[event["id"]] = now
        elif event["id"] in self._started:
            name = event["name"]
            self.seconds[name] = self.seconds.get(name, 0.0) + now - self._started.pop(event["id"])


def _config(thread_id: str | None) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id}} if thread_id is not None else {}
