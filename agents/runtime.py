"""Compile the agent from its loaded parts (agents.parts) and open its conversation memory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from agents.chat import ChatAgent
from agents.graph import build_graph
from agents.memory import open_checkpointer
from agents.nodes import AgentNodes
from agents.parts import AgentParts
from configs.settings import AppSettings


@asynccontextmanager
async def open_agent(settings: AppSettings, parts: AgentParts) -> AsyncIterator[ChatAgent]:
    """The compiled agent with conversation memory, for the lifetime of the block."""
    async with open_checkpointer(settings.agent) as checkpointer:
        if settings.agent.workflow == "agentic":
            from agents.agentic.graph import build_agentic_graph
            from agents.agentic.runtime import make_agentic_nodes

            agentic = make_agentic_nodes(settings, parts)
            yield ChatAgent(build_agentic_graph(agentic, checkpointer), agentic.prompts.version,
                            parts.generator.stats)
        else:
            nodes = AgentNodes(
                guard=parts.guard,
                retriever=parts.retriever,
                generator=parts.generator,
                prompts=parts.prompts,
                settings=settings.agent,
                top_k=settings.retrieval.top_k,
            )
            yield ChatAgent(build_graph(nodes, checkpointer), parts.prompts.version, parts.generator.stats)
