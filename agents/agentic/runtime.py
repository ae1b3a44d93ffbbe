"""Assemble the agentic graph's nodes from the loaded agent parts (agents.parts.AgentParts)."""

from __future__ import annotations

from concurrent.futures import Executor
from typing import TYPE_CHECKING

from agents.agentic.config import load_agentic_prompts
from agents.agentic.evidence import EvidenceRanker
from agents.agentic.graph import AgenticNodes
from agents.agentic.grounding import GroundingChecker
from agents.nodes import AgentNodes
from configs.settings import AppSettings
from retrieval.embeddings import build_embeddings

if TYPE_CHECKING:
    from agents.parts import AgentParts


def make_agentic_nodes(settings: AppSettings, parts: AgentParts, executor: Executor) -> AgenticNodes:
    agentic = settings.agent.agentic
    prompts = load_agentic_prompts(agentic.prompts_path)
    embeddings = build_embeddings(settings.embedding)  # the retriever's own MiniLM (one shared instance)

    return AgenticNodes(
        answer=AgentNodes.from_parts(settings, parts, prompts.answer, executor),
        strict=AgentNodes.from_parts(settings, parts, prompts.strict, executor),
        retriever=parts.retriever,
        grounding=GroundingChecker(embeddings, agentic),
        evidence=EvidenceRanker(embeddings, agentic),
        prompts=prompts,
        settings=agentic,
        top_k=settings.retrieval.top_k,
    )
