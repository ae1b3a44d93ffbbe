"""The agentic graph: route the turn, grade and retry retrieval, check grounding; safety gates on every path.

    START -> safety_in --unsafe--> refuse -> END
    safety_in --safe--> route_turn --conversation--> generate
    route_turn --knowledge--> retrieve -> grade
    grade --enough relevant--> generate (answer_with generator) or quote_evidence (answer_with quotes)
    grade --too few, retries left--> rewrite_query -> retrieve
    grade --too few, none left--> not_found -> safety_out
    generate --no documents--> safety_out
    generate --documents--> check_grounding --grounded--> safety_out -> END
    check_grounding --unsupported, first time--> regenerate -> check_grounding
    check_grounding --unsupported again--> quote_evidence -> safety_out
The generator sees each graded chunk cut to its best sentences (agents.agentic.evidence); an answer still
unsupported after the stricter retry is replaced by the best sentences themselves, quoted with citations; those
may also come from the chunk that follows each kept one in its file (evidence_following_chunks) and from the
one before it in the same section (evidence_section_openings). A
generator too small to ground its answers (answer_with quotes) is not asked: the quotes are the answer.
Every loop is bounded: rewrite_query by max_retrieval_retries, regenerate by one pass; the recursion limit
in AgenticSettings is a backstop. Each route entry names the node and, where it decided, its verdict.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from langchain_core.messages import AIMessage
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from agents.agentic.config import AgenticPrompts
from agents.agentic.evidence import (
    EvidenceRanker,
    Passage,
    excerpts,
    format_quotes,
    select_quotes,
    with_cited_neighbours,
)
from agents.agentic.grading import grade_chunks, passing_documents
from agents.agentic.grounding import GroundingChecker
from agents.agentic.rewrite import rewrite_query
from agents.agentic.router import Intent, classify_turn, standalone_query
from agents.nodes import AgentNodes, SearchesKnowledge, to_context_documents, user_texts
from agents.state import AgentState, ContextDocument, TurnContext
from configs.settings import AgenticSettings
from retrieval.retriever import RetrievedChunk

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from langgraph.graph.state import CompiledStateGraph

logger = logging.getLogger(__name__)

GRAPH_NAME = "aligned_rag_agentic"


class SearchesWithNeighbours(SearchesKnowledge, Protocol):
    def adjacent(self, ids: Sequence[str], step: int = 1, *, same_section: bool = False
                 ) -> list[RetrievedChunk]: ...


@dataclass(kw_only=True)
class AgenticState(AgentState):
    """Per-turn fields beyond the linear graph's; route_turn resets them at the start of every turn."""

    intent: Intent = "knowledge"
    query: str = ""
    attempts: int = 0  # query rewrites so far this turn
    regenerated: bool = False
    grounded: bool | None = None
    passages: list[Passage] = dataclasses.field(default_factory=list)  # graded chunks' sentences, best first
    # chunks beside the graded ones in their files, numbered after the documents: quoted only when cited
    neighbours: list[ContextDocument] = dataclasses.field(default_factory=list)


class AgenticNodes:
    """The workflow's own nodes; the safety gates and generation are the linear graph's (AgentNodes)."""

    def __init__(
        self,
        *,
        answer: AgentNodes,
        strict: AgentNodes,
        retriever: SearchesWithNeighbours,
        grounding: GroundingChecker,
        evidence: EvidenceRanker,
        prompts: AgenticPrompts,
        settings: AgenticSettings,
        top_k: int,
    ) -> None:
        self.answer = answer
        self.strict = strict
        self.retriever = retriever
        self.grounding = grounding
        self.evidence = evidence
        self.prompts = prompts
        self.settings = settings
        self.top_k = top_k

    def route_turn(self, state: AgenticState) -> dict[str, Any]:
        *earlier, question = user_texts(state.messages)
        intent = classify_turn(question)
        return {
            "intent": intent,
            "query": standalone_query(question, earlier),
            "attempts": 0,
            "regenerated": False,
            "grounded": None,
            "passages": [],
            "neighbours": [],
            "route": [*state.route, f"route_turn:{intent}"],
        }

    @staticmethod
    def after_route(state: AgenticState) -> Literal["retrieve", "generate"]:
        return "generate" if state.intent == "conversation" else "retrieve"

    def retrieve(self, state: AgenticState) -> dict[str, Any]:
        # Each retry also widens the search, so a chunk ranked just below the cut gets its chance.
        chunks = self.retriever.search(state.query, k=self.top_k * (state.attempts + 1))
        return {"documents": to_context_documents(chunks), "route": [*state.route, "retrieve"]}

    def grade(self, state: AgenticState) -> dict[str, Any]:
        grades = grade_chunks(state.query, state.documents, self.settings)
        documents = passing_documents(grades, self.top_k)
        removed = sum(g.injection_removed for g in grades)
        verdict = f"grade:kept={len(documents)}/{len(grades)}"
        if removed:
            verdict += f",injections_removed={removed}"
        logger.info("%s for query %r", verdict, state.query[:80])
        neighbours = self._neighbours(documents)
        passages = self.evidence.rank(state.query, documents + neighbours) if documents else []
        return {"documents": documents, "passages": passages, "neighbours": neighbours,
                "route": [*state.route, verdict]}

    def _neighbours(self, documents: list[ContextDocument]) -> list[ContextDocument]:
        """The chunk after each kept one in its file (a list cut from its lead-in), then the one before it when
        it lies in the same section (the section's opening statement), as the settings allow."""
        ids = [doc["id"] for doc in documents]  # adjacent() leaves these out itself
        if not ids:
            return []
        chunks = self.retriever.adjacent(ids, 1) if self.settings.evidence_following_chunks else []
        if self.settings.evidence_section_openings:
            following = {chunk.id for chunk in chunks}
            chunks += [chunk for chunk in self.retriever.adjacent(ids, -1, same_section=True)
                       if chunk.id not in following]
        return to_context_documents(chunks, start=len(documents) + 1)

    def after_grade(
        self, state: AgenticState
    ) -> Literal["generate", "quote_evidence", "rewrite_query", "not_found"]:
        if len(state.documents) >= self.settings.min_relevant_chunks:
            return "quote_evidence" if self.settings.answer_with == "quotes" else "generate"
        return "rewrite_query" if state.attempts < self.settings.max_retrieval_retries else "not_found"

    def rewrite_query(self, state: AgenticState) -> dict[str, Any]:
        *earlier, question = user_texts(state.messages)
        attempt = state.attempts + 1
        return {
            "attempts": attempt,
            "query": rewrite_query(question, attempt, earlier),
            "route": [*state.route, f"rewrite_query:attempt={attempt}"],
        }

    def not_found(self, state: AgenticState) -> dict[str, Any]:
        get_stream_writer()({"type": "token", "text": self.prompts.not_found})
        return {
            "messages": [AIMessage(content=self.prompts.not_found, id=str(uuid.uuid4()))],
            "documents": [],
            "route": [*state.route, "not_found"],
        }

    async def generate(self, state: AgenticState, runtime: Runtime[TurnContext]) -> dict[str, Any]:
        return await self.answer.generate(self._focused(state), runtime)

    def _focused(self, state: AgenticState) -> AgenticState:
        """The state as the generator sees it: each chunk cut to its best sentences."""
        documents = excerpts(state.documents, state.passages, self.settings.excerpt_sentences)
        return dataclasses.replace(state, documents=documents)

    @staticmethod
    def after_generate(state: AgenticState) -> Literal["check_grounding", "safety_out"]:
        return "check_grounding" if state.documents else "safety_out"

    def check_grounding(self, state: AgenticState) -> dict[str, Any]:
        report = self.grounding.check(state.messages[-1].text, state.documents)
        return {"grounded": report.grounded, "route": [*state.route, f"check_grounding:{report.summary()}"]}

    @staticmethod
    def after_grounding(state: AgenticState) -> Literal["safety_out", "regenerate", "quote_evidence"]:
        if state.grounded:
            return "safety_out"
        return "quote_evidence" if state.regenerated else "regenerate"

    async def regenerate(self, state: AgenticState, runtime: Runtime[TurnContext]) -> dict[str, Any]:
        previous = state.messages[-1]
        get_stream_writer()({"type": "retract", "replacement": ""})
        # The stricter prompt answers the user's turn again; the unsupported answer is not shown to it.
        retry = dataclasses.replace(self._focused(state), messages=state.messages[:-1])
        update = await self.strict.generate(retry, runtime)
        update["messages"] = [AIMessage(content=update["messages"][0].text, id=previous.id)]
        update.setdefault("response_verdict", None)  # the first answer's stream verdict no longer applies
        return update | {"regenerated": True, "route": [*state.route, "regenerate"]}

    def quote_evidence(self, state: AgenticState) -> dict[str, Any]:
        """Answer with the sentences that best answer the question, quoted and cited: at once (answer_with
        quotes), or in place of a generated answer that stayed unsupported."""
        previous = state.messages[-1]
        replaces = isinstance(previous, AIMessage)  # the unsupported answer, already streamed: withdraw it
        documents, quotes = with_cited_neighbours(
            state.documents, state.neighbours, select_quotes(state.passages, self.settings.evidence_sentences)
        )
        text = format_quotes(self.prompts.evidence_intro, quotes) if quotes else self.prompts.not_found
        verdict = self.answer.check_before_showing(state.messages[:-1] if replaces else state.messages, text)
        if verdict is None or verdict.safe:  # an unsafe text is never shown: safety_out replaces it
            event = {"type": "retract", "replacement": text} if replaces else {"type": "token", "text": text}
            get_stream_writer()(event)
        return {
            "messages": [AIMessage(content=text, id=previous.id if replaces else str(uuid.uuid4()))],
            "documents": documents,
            "response_verdict": verdict,  # None: safety_out checks the text
            "route": [*state.route, f"quote_evidence:quotes={len(quotes)}"],
        }


def build_agentic_graph(
    nodes: AgenticNodes, checkpointer: BaseCheckpointSaver | None = None
) -> CompiledStateGraph:
    gates = nodes.answer  # safety_in, safety_out and refuse are the linear graph's own nodes
    builder = StateGraph(AgenticState, context_schema=TurnContext)
    builder.add_node("safety_in", gates.safety_in)
    builder.add_node("refuse", gates.refuse)
    builder.add_node("route_turn", nodes.route_turn)
    builder.add_node("retrieve", nodes.retrieve)
    builder.add_node("grade", nodes.grade)
    builder.add_node("rewrite_query", nodes.rewrite_query)
    builder.add_node("not_found", nodes.not_found)
    builder.add_node("generate", nodes.generate)
    builder.add_node("check_grounding", nodes.check_grounding)
    builder.add_node("regenerate", nodes.regenerate)
    builder.add_node("quote_evidence", nodes.quote_evidence)
    builder.add_node("safety_out", gates.safety_out)

    builder.add_edge(START, "safety_in")
    # The linear graph's verdict "retrieve" means "safe": here a safe turn is routed first.
    builder.add_conditional_edges(
        "safety_in", gates.route_request, {"retrieve": "route_turn", "refuse": "refuse"}
    )
    builder.add_conditional_edges("route_turn", nodes.after_route, ["retrieve", "generate"])
    builder.add_edge("retrieve", "grade")
    builder.add_conditional_edges(
        "grade", nodes.after_grade, ["generate", "quote_evidence", "rewrite_query", "not_found"]
    )
    builder.add_edge("rewrite_query", "retrieve")
    builder.add_edge("not_found", "safety_out")
    builder.add_conditional_edges("generate", nodes.after_generate, ["check_grounding", "safety_out"])
    builder.add_conditional_edges(
        "check_grounding", nodes.after_grounding, ["safety_out", "regenerate", "quote_evidence"]
    )
    builder.add_edge("regenerate", "check_grounding")
    builder.add_edge("quote_evidence", "safety_out")
    builder.add_edge("safety_out", END)
    builder.add_edge("refuse", END)
    graph = builder.compile(checkpointer=checkpointer, name=GRAPH_NAME)
    return graph.with_config(recursion_limit=nodes.settings.recursion_limit)
