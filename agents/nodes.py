"""The graph's nodes. Each reads the state and returns a partial update; the graph wires them in graph.py.

Custom stream events (LangGraph `stream_mode="custom"`), for callers that stream:
- `{"type": "token", "text": ...}`: answer text that may be shown now;
- `{"type": "retract", "replacement": ...}`: the text shown so far is withdrawn; show the replacement.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import threading
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal, Protocol

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.config import get_stream_writer
from langgraph.runtime import Runtime

from agents.agentic.router import standalone_query
from agents.messages import ChatMessages
from agents.prompts import PromptTemplates, build_system_prompt
from agents.safety.refusal import refusal_message
from agents.safety.verdict import SafetyGuard, Verdict
from agents.state import AgentState, ContextDocument, TurnContext
from agents.stream_gate import SentenceGate
from configs.settings import AgentSettings, AppSettings
from retrieval.retriever import RetrievedChunk

if TYPE_CHECKING:
    from agents.parts import AgentParts

logger = logging.getLogger(__name__)

# With an engine that runs one generation at a time (the local model on CPU), every generation runs on this one
# thread, turns in arrival order (agents.arrival_order). The model serializes generations anyway (its lock); queued
# in LangGraph's default thread pool instead, they would hold every worker while they wait, and the short
# synchronous steps of other turns (the output check of a finished answer) would wait behind them.
GENERATION_EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generate")


def generation_executor(generator: StreamsAnswers) -> contextlib.AbstractContextManager[Executor]:
    """Where the generate nodes run, for the agent's lifetime: the one thread above for a sequential engine; for
    one that batches concurrent streams (continuous batching on a GPU, a remote server), a pool as wide."""
    if generator.concurrency == 1:
        return contextlib.nullcontext(GENERATION_EXECUTOR)
    return ThreadPoolExecutor(generator.concurrency, thread_name_prefix="generate")


class SearchesKnowledge(Protocol):
    def search(self, query: str, k: int | None = None) -> list[RetrievedChunk]: ...


class StreamsAnswers(Protocol):
    concurrency: int  # generations that may usefully run at once

    def stream(self, messages: ChatMessages) -> Iterator[str]: ...


def to_chat_messages(messages: Sequence[AnyMessage]) -> ChatMessages:
    roles = {"human": "user", "ai": "assistant"}
    return [{"role": roles[m.type], "content": m.text} for m in messages if m.type in roles]


def user_texts(messages: Sequence[AnyMessage]) -> list[str]:
    return [message.text for message in messages if isinstance(message, HumanMessage)]


def to_context_documents(chunks: Sequence[RetrievedChunk], start: int = 1) -> list[ContextDocument]:
    """The chunks numbered for citation from `start`."""
    return [
        ContextDocument(
            index=number,
            id=chunk.id,
            source=chunk.source,
            title=str(chunk.metadata.get("title") or chunk.source),
            citation=chunk.citation,
            heading=str(chunk.metadata.get("heading") or ""),
            score=chunk.score,
            text=chunk.text,
        )
        for number, chunk in enumerate(chunks, start=start)
    ]


class AgentNodes:
    """The nodes, bound to the parts they use (guard, retriever, generator, prompts)."""

    def __init__(
        self,
        *,
        guard: SafetyGuard,
        retriever: SearchesKnowledge,
        generator: StreamsAnswers,
        prompts: PromptTemplates,
        settings: AgentSettings,
        top_k: int,
        executor: Executor = GENERATION_EXECUTOR,
    ) -> None:
        self.guard = guard
        self.executor = executor
        self.retriever = retriever
        self.generator = generator
        self.prompts = prompts
        self.settings = settings
        self.top_k = top_k

    @classmethod
    def from_parts(
        cls, settings: AppSettings, parts: AgentParts, prompts: PromptTemplates, executor: Executor
    ) -> AgentNodes:
        """The nodes over the loaded parts, answering with `prompts` (each workflow brings its own)."""
        return cls(guard=parts.guard, retriever=parts.retriever, generator=parts.generator, prompts=prompts,
                   settings=settings.agent, top_k=settings.retrieval.top_k, executor=executor)

    def _window(self, messages: Sequence[AnyMessage]) -> ChatMessages:
        """The latest user turn and up to `history_turns` messages before it."""
        return to_chat_messages(messages)[-(self.settings.history_turns + 1) :]

    def safety_in(self, state: AgentState) -> dict[str, Any]:
        verdict = self.guard.check_request(self._window(state.messages))
        if not verdict.safe:
            logger.info("request refused: categories=%s score=%.2f", verdict.categories, verdict.score)
        return {"request_verdict": verdict, "route": [*state.route, "safety_in"]}

    @staticmethod
    def route_request(state: AgentState) -> Literal["retrieve", "refuse"]:
        return "retrieve" if _request_verdict(state).safe else "refuse"

    def retrieve(self, state: AgentState) -> dict[str, Any]:
        *earlier, question = user_texts(state.messages)
        # A follow-up ("and for a SEV-2?") names its topic only in the turn before: carry that turn's terms.
        chunks = self.retriever.search(standalone_query(question, earlier), k=self.top_k)
        return {"documents": to_context_documents(chunks), "route": [*state.route, "retrieve"]}

    async def generate(self, state: AgentState, runtime: Runtime[TurnContext]) -> dict[str, Any]:
        """Stream the answer from a generation thread, after the turns that arrived before this one where the turn
        has a place; a cancelled turn stops the model at its next token."""
        turn = runtime.context if runtime.context is not None else TurnContext()
        if turn.place is not None:
            await turn.place.earlier_turns_ended()
        # The copied context carries LangGraph's run config, which the stream writer reads.
        run = functools.partial(contextvars.copy_context().run, self._generate, state, turn.cancelled)
        return await asyncio.get_running_loop().run_in_executor(self.executor, run)

    def _generate(self, state: AgentState, cancelled: threading.Event) -> dict[str, Any]:
        write = get_stream_writer()
        if cancelled.is_set():  # the caller left while this turn waited for the model: skip it
            logger.info("turn cancelled before generation")
            return {"messages": [AIMessage(content="", id=str(uuid.uuid4()))], "route": [*state.route, "generate"]}
        conversation = self._window(state.messages)
        prompt = [{"role": "system", "content": build_system_prompt(self.prompts, state.documents)}]
        gate = (
            SentenceGate(lambda text: self.guard.check_response(conversation, text))
            if self.settings.check_stream_sentences
            else None
        )
        pieces: list[str] = []
        with contextlib.closing(iter(self.generator.stream(prompt + conversation))) as tokens:
            for piece in tokens:
                if cancelled.is_set():
                    logger.info("turn cancelled by the caller; generation stopped")
                    break
                pieces.append(piece)
                shown = gate.feed(piece) if gate else piece
                if shown:
                    write({"type": "token", "text": shown})
                if gate and gate.flagged:
                    logger.info("answer flagged mid-stream; generation stopped")
                    break  # closing the stream stops the model at its next token
        if gate and (tail := gate.flush()):
            write({"type": "token", "text": tail})
        answer = "".join(pieces).strip()
        if not answer:
            answer = self.prompts.empty_answer
            write({"type": "token", "text": answer})
        update: dict[str, Any] = {
            "messages": [AIMessage(content=answer, id=str(uuid.uuid4()))],
            "route": [*state.route, "generate"],
        }
        # Hand the gate's verdict to safety_out only when it judged exactly this answer.
        if gate and gate.verdict is not None and gate.checked_text.strip() == answer:
            update["response_verdict"] = gate.verdict
        return update

    def check_before_showing(self, messages: Sequence[AnyMessage], text: str) -> Verdict | None:
        """The output check of a fixed answer to `messages`, when answers are shown only once checked
        (check_stream_sentences); None otherwise, and safety_out checks it after it was shown."""
        if not self.settings.check_stream_sentences:
            return None
        return self.guard.check_response(self._window(messages), text)

    def safety_out(self, state: AgentState) -> dict[str, Any]:
        answer = state.messages[-1]
        verdict = state.response_verdict or self.guard.check_response(
            self._window(state.messages[:-1]), answer.text
        )
        update: dict[str, Any] = {"response_verdict": verdict, "route": [*state.route, "safety_out"]}
        if not verdict.safe:
            refusal = refusal_message(verdict)
            logger.info("answer withheld: categories=%s score=%.2f", verdict.categories, verdict.score)
            get_stream_writer()({"type": "retract", "replacement": refusal})
            # Same id: add_messages replaces the unsafe answer, so it never enters the conversation memory.
            update["messages"] = [AIMessage(content=refusal, id=answer.id)]
        return update

    def refuse(self, state: AgentState) -> dict[str, Any]:
        refusal = refusal_message(_request_verdict(state))
        get_stream_writer()({"type": "token", "text": refusal})
        return {
            "messages": [AIMessage(content=refusal, id=str(uuid.uuid4()))],
            "route": [*state.route, "refuse"],
        }


def _request_verdict(state: AgentState) -> Verdict:
    if state.request_verdict is None:
        raise RuntimeError("the request has not been checked; the graph must run safety_in first")
    return state.request_verdict
