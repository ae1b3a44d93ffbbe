"""Assemble the agentic graph's nodes from the loaded agent parts (agents.parts.AgentParts)."""

from __future__ import annotations

from concurrent.futures import Executor
from typing import TYPE_CHECKING

from agents.agentic.config import load_agentic_prompts
from agents.agentic.evidence import EvidenceRanker
from agents.agentic.graph import AgenticNodes
from agents.agentic.grounding import GroundingChecker
from agents.nodes import AgentNodes
from agents.prompts import PromptTemplates
from configs.settings import AppSettings
from retrieval.embeddings import build_embeddings

if TYPE_CHECKING:
    from agents.parts import AgentParts


def make_agentic_nodes(settings: AppSettings, parts: AgentParts, executor: Executor) -> AgenticNodes:
    agentic = settings.agent.agentic
    prompts = load_agentic_prompts(agentic.prompts_path)
    embeddings = build_embeddings(settings.embedding)  # the retriever's own MiniLM (one shared instance)

    def nodes_with(templates: PromptTemplates) -> AgentNodes:
        return AgentNodes(guard=parts.guard, retriever=parts.retriever, generator=parts.generator,
                          prompts=templates, settings=settings.agent, top_k=settings.retrieval.top_k,
                          executor=executor)

    return AgenticNodes(
        answer=nodes_with(prompts.answer),
        strict=nodes_with(prompts.strict),
        retriever=parts.retriever,
        grounding=GroundingChecker(embeddings, agentic),
        evidence=EvidenceRanker(embeddings, agentic),
        prompts=prompts,
        settings=agentic,
        top_k=settings.retrieval.top_k,
    )
