"""Assemble the agent from settings: load the models (slow, blocking), then open memory and compile.

Two steps, so a host (the API) can use the loaded parts in between, e.g. ingest the starter knowledge
base through the retriever's own store: a second Chroma client on the same directory can hang.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from agents.chat import ChatAgent
from agents.generator import Generator
from agents.graph import build_graph
from agents.memory import open_checkpointer
from agents.nodes import AgentNodes
from agents.prompts import PromptTemplates, load_prompts
from agents.safety import build_guard
from agents.safety.verdict import SafetyGuard
from configs.settings import AppSettings
from retrieval.retriever import Retriever, build_retriever

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentParts:
    prompts: PromptTemplates
    generator: Generator
    retriever: Retriever
    guard: SafetyGuard


def load_parts(settings: AppSettings) -> AgentParts:
    """Load prompts, generator, retriever and guard. Blocking: run it in a worker thread from async code."""
    started = time.perf_counter()
    prompts = load_prompts(settings.agent.prompts_path)  # first: a bad template fails before slow loads
    generator = Generator.load(settings.model)
    retriever = build_retriever(settings)
    guard = build_guard(settings, judge=generator.generate)
    logger.info("agent parts loaded in %.1f s (prompts %s, guard %s)",
                time.perf_counter() - started, prompts.version, guard.name)
    return AgentParts(prompts, generator, retriever, guard)


@asynccontextmanager
async def open_agent(settings: AppSettings, parts: AgentParts) -> AsyncIterator[ChatAgent]:
    """The compiled agent with conversation memory, for the lifetime of the block."""
    async with open_checkpointer(settings.agent) as checkpointer:
        if settings.agent.workflow == "agentic":
            from agents.agentic.graph import build_agentic_graph
            from agents.agentic.runtime import make_agentic_nodes

            agentic = make_agentic_nodes(settings, parts)
            yield ChatAgent(build_agentic_graph(agentic, checkpointer), agentic.prompts.version)
        else:
            nodes = AgentNodes(
                guard=parts.guard,
                retriever=parts.retriever,
                generator=parts.generator,
                prompts=parts.prompts,
                settings=settings.agent,
                top_k=settings.retrieval.top_k,
            )
            yield ChatAgent(build_graph(nodes, checkpointer), parts.prompts.version)
