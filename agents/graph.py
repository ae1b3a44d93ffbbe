"""The agent graph: safety_in -> retrieve -> generate -> safety_out, with a refusal path.

    START -> safety_in --safe--> retrieve -> generate -> safety_out -> END
                       \\--unsafe--> refuse -> END
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from langgraph.graph import END, START, StateGraph

from agents.nodes import AgentNodes
from agents.state import AgentState, TurnContext

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from langgraph.graph.state import CompiledStateGraph

GRAPH_NAME = "aligned_rag_agent"


def build_graph(nodes: AgentNodes, checkpointer: BaseCheckpointSaver | None = None) -> CompiledStateGraph:
    """Wire the nodes; the checkpointer (keyed by `thread_id`) gives the graph conversation memory."""
    builder = StateGraph(AgentState, context_schema=TurnContext)
    builder.add_node("safety_in", nodes.safety_in)
    builder.add_node("retrieve", nodes.retrieve)
    builder.add_node("generate", nodes.generate)
    builder.add_node("safety_out", nodes.safety_out)
    builder.add_node("refuse", nodes.refuse)

    builder.add_edge(START, "safety_in")
    builder.add_conditional_edges("safety_in", nodes.route_request, ["retrieve", "refuse"])
    builder.add_edge("retrieve", "generate")
    builder.add_edge("generate", "safety_out")
    builder.add_edge("safety_out", END)
    builder.add_edge("refuse", END)
    return builder.compile(checkpointer=checkpointer, name=GRAPH_NAME)
