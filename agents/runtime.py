"""Compile the agent from its loaded parts (agents.parts) and open its conversation memory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import Executor
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from agents.arrival_order import ArrivalOrder
from agents.chat import ChatAgent
from agents.graph import build_graph
from agents.memory import open_checkpointer
from agents.nodes import AgentNodes, generation_executor
from agents.parts import AgentParts
from configs.settings import AppSettings

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver


@asynccontextmanager
async def open_agent(settings: AppSettings, parts: AgentParts) -> AsyncIterator[ChatAgent]:
    """The compiled agent with conversation memory, for the lifetime of the block."""
    with generation_executor(parts.generator) as executor:
        async with open_checkpointer(settings.agent) as checkpointer:
            yield _compile(settings, parts, executor, checkpointer)


def _compile(
    settings: AppSettings, parts: AgentParts, executor: Executor, checkpointer: BaseCheckpointSaver
) -> ChatAgent:
    # One generation at a time: turns take the model in the order they came (agents.arrival_order).
    arrival_order = ArrivalOrder() if parts.generator.concurrency == 1 else None
    if settings.agent.workflow == "agentic":
        from agents.agentic.graph import build_agentic_graph
        from agents.agentic.runtime import make_agentic_nodes

        agentic = make_agentic_nodes(settings, parts, executor)
        return ChatAgent(build_agentic_graph(agentic, checkpointer), agentic.prompts.version, parts.generator.stats,
                         arrival_order)
    nodes = AgentNodes.from_parts(settings, parts, parts.prompts, executor)
    return ChatAgent(build_graph(nodes, checkpointer), parts.prompts.version, parts.generator.stats, arrival_order)
