"""The agentic graph over the linear graph's test doubles (guard, retriever), a real MiniLM for grounding."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agents.agentic.config import load_agentic_prompts
from agents.agentic.evidence import EvidenceRanker
from agents.agentic.graph import AgenticNodes, build_agentic_graph
from agents.agentic.grounding import GroundingChecker
from agents.nodes import AgentNodes
from configs.settings import AgenticSettings, load_settings
from retrieval.embeddings import build_embeddings
from tests.agents.conftest import GUIDE_CHUNKS, KeywordGuard, ListRetriever


class AnswerSequence:
    """Streams its answers in turn (the last one repeats) and records the prompts it was given."""

    concurrency = 1

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.prompts: list[list[dict[str, str]]] = []

    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]:
        self.prompts.append(messages)
        answer = self.answers[min(len(self.prompts), len(self.answers)) - 1]
        for index, word in enumerate(answer.split(" ")):
            yield word if index == 0 else " " + word


@pytest.fixture(scope="session")
def embeddings():
    return build_embeddings(load_settings().embedding)


@pytest.fixture
def make_agentic(agent_settings, embeddings):
    """make_agentic(*answers, chunks=..., topic=..., checkpointer=..., settings=..., followers=..., openings=...)
    -> (graph, guard, retriever, generator)."""
    prompts = load_agentic_prompts(AgenticSettings().prompts_path)

    def make(*answers: str, chunks=None, topic: str | None = None, checkpointer=None,
             settings: AgenticSettings | None = None, followers=None, openings=None):
        settings = settings or AgenticSettings()
        guard = KeywordGuard()
        retriever = ListRetriever(GUIDE_CHUNKS if chunks is None else chunks, topic, followers, openings)
        generator = AnswerSequence(*(answers or ("The service listens on port 8000 by default [1].",)))

        def nodes_with(templates) -> AgentNodes:
            return AgentNodes(guard=guard, retriever=retriever, generator=generator, prompts=templates,
                              settings=agent_settings, top_k=4)

        nodes = AgenticNodes(answer=nodes_with(prompts.answer), strict=nodes_with(prompts.strict),
                             retriever=retriever, grounding=GroundingChecker(embeddings, settings),
                             evidence=EvidenceRanker(embeddings, settings),
                             prompts=prompts, settings=settings, top_k=4)
        return build_agentic_graph(nodes, checkpointer), guard, retriever, generator

    return make
