"""Deterministic doubles for the graph's collaborators (unit tests only) and the real-stack fixtures."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.chat import ChatAgent, TokenEvent
from agents.graph import build_graph
from agents.nodes import AgentNodes
from agents.prompts import load_prompts
from agents.safety.verdict import Verdict
from configs.settings import AgentSettings, load_settings
from retrieval.retriever import RetrievedChunk

UNSAFE_REQUEST_WORD = "bomb"
UNSAFE_ANSWER_WORD = "FORBIDDEN"


class KeywordGuard:
    """Flags a request containing UNSAFE_REQUEST_WORD and an answer containing UNSAFE_ANSWER_WORD."""

    name = "keyword"

    def __init__(self) -> None:
        self.requests: list[list[dict[str, str]]] = []
        self.responses: list[str] = []

    def check_request(self, messages: list[dict[str, str]]) -> Verdict:
        self.requests.append(messages)
        unsafe = UNSAFE_REQUEST_WORD in messages[-1]["content"].lower()
        return Verdict(safe=not unsafe, categories=["S9"] if unsafe else [], score=float(unsafe),
                       backend=self.name, stage="request")

    def check_response(self, messages: list[dict[str, str]], answer: str) -> Verdict:
        self.responses.append(answer)
        unsafe = UNSAFE_ANSWER_WORD in answer
        return Verdict(safe=not unsafe, categories=["S1"] if unsafe else [], score=float(unsafe),
                       backend=self.name, stage="response")


class ListRetriever:
    """Returns its chunks for queries that mention `topic` (any query when topic is None); `followers` maps a
    chunk id to the chunk after it in its file, `openings` to the chunk before it in its section."""

    def __init__(self, chunks: list[RetrievedChunk], topic: str | None = None,
                 followers: dict[str, RetrievedChunk] | None = None,
                 openings: dict[str, RetrievedChunk] | None = None) -> None:
        self.chunks = chunks
        self.topic = topic
        self.followers = followers or {}
        self.openings = openings or {}
        self.queries: list[str] = []

    def search(self, query: str, k: int | None = None) -> list[RetrievedChunk]:
        self.queries.append(query)
        return self.chunks[:k] if self.topic is None or self.topic in query else []

    def adjacent(self, ids: list[str], step: int = 1, *, same_section: bool = False) -> list[RetrievedChunk]:
        assert step == 1 or (step == -1 and same_section), "the graph reads on, or back within a section"
        beside = self.followers if step == 1 else self.openings
        return [beside[i] for i in ids if i in beside]


class ScriptedGenerator:
    """Streams a fixed answer word by word and records the prompts it was given."""

    concurrency = 1

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.prompts: list[list[dict[str, str]]] = []
        self.pieces_sent = 0

    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]:
        self.prompts.append(messages)
        for index, word in enumerate(self.answer.split(" ")):
            self.pieces_sent += 1
            yield word if index == 0 else " " + word


GUIDE_CHUNKS = [
    RetrievedChunk(id="c1", text="The service listens on port 8000 by default.", source="chat-api.md",
                   score=0.71, metadata={"title": "The chat API"}),
    RetrievedChunk(id="c2", text="Set api.port to change it.", source="configuration.md",
                   score=0.52, metadata={"title": "Configuration"}),
]


@pytest.fixture
def agent_settings() -> AgentSettings:
    return AgentSettings(checkpointer="memory", history_turns=4)


@pytest.fixture
def prompts():
    return load_prompts(load_settings().agent.prompts_path)


@pytest.fixture
def make_graph(agent_settings, prompts):
    """make_graph(answer=..., checkpointer=...) -> (graph, guard, retriever, generator), over doubles."""

    def make(answer: str = "Port 8000 [1]. Change it with api.port [2].", checkpointer=None,
             settings: AgentSettings | None = None, chunks: list[RetrievedChunk] | None = None,
             topic: str | None = None):
        guard = KeywordGuard()
        retriever = ListRetriever(GUIDE_CHUNKS if chunks is None else chunks, topic)
        generator = ScriptedGenerator(answer)
        nodes = AgentNodes(guard=guard, retriever=retriever, generator=generator, prompts=prompts,
                           settings=settings or agent_settings, top_k=4)
        return build_graph(nodes, checkpointer), guard, retriever, generator

    return make


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> AgentSettings:
    return AgentSettings(checkpointer="sqlite", sqlite_path=tmp_path / "memory" / "checkpoints.sqlite")


async def disconnect_after_the_first_token(graph, generator, question: str) -> int:
    """Stream a turn, close the stream at its first token, wait until the generation thread is free again.

    Returns how many pieces the generator produced in all (the double holds on at its third piece until
    the caller has gone, so a node that ignores the cancellation would produce every piece).
    """
    caller_left, generation_ended = threading.Event(), threading.Event()
    scripted, produced = generator.stream, []

    def stream_until_closed(messages):
        try:
            for piece in scripted(messages):
                produced.append(piece)
                if len(produced) == 3:
                    caller_left.wait(timeout=5)
                yield piece
        finally:
            generation_ended.set()

    generator.stream = stream_until_closed
    events = ChatAgent(graph, "test").stream(question, "disconnect")
    assert isinstance(await anext(events), TokenEvent)
    await events.aclose()
    caller_left.set()
    assert await asyncio.to_thread(generation_ended.wait, 5), "the generator's stream was never closed"
    produced_for_the_caller = len(produced)
    # The generation thread takes the next turn at once: nothing still generates for the caller who left.
    async def next_turn() -> list:
        return [event async for event in ChatAgent(graph, "test").stream(question, "after-disconnect")]

    assert await asyncio.wait_for(next_turn(), timeout=10)
    return produced_for_the_caller
