"""Top-k search over the knowledge base, scored by cosine similarity."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from langchain_chroma import Chroma

from configs.settings import AppSettings, RetrievalSettings
from retrieval.store import open_store

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrievedChunk:
    id: str
    text: str
    source: str
    score: float  # cosine similarity: higher is more relevant
    metadata: dict[str, Any] = field(default_factory=dict)


class Retriever:
    """Embeds a query, asks Chroma for its nearest chunks, and drops the weakly related ones."""

    def __init__(self, store: Chroma, settings: RetrievalSettings) -> None:
        self.store = store
        self.settings = settings

    def search(self, query: str, k: int | None = None) -> list[RetrievedChunk]:
        if not query or not query.strip():
            raise ValueError("the search query is empty; pass the text to search for")
        k = self.settings.top_k if k is None else k
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        # The collection uses cosine distance over normalized vectors: similarity = 1 - distance.
        hits = self.store.similarity_search_with_score(query, k=k)
        chunks = [
            RetrievedChunk(
                id=document.id or "",
                text=document.page_content,
                source=str(document.metadata.get("source", "")),
                score=1.0 - distance,
                metadata=dict(document.metadata),
            )
            for document, distance in hits
        ]
        relevant = [chunk for chunk in chunks if chunk.score >= self.settings.min_relevance]
        logger.debug(
            "query %r: %d hits, %d at or above relevance %.2f",
            query[:80], len(chunks), len(relevant), self.settings.min_relevance,
        )
        return sorted(relevant, key=lambda chunk: chunk.score, reverse=True)


def build_retriever(settings: AppSettings) -> Retriever:
    return Retriever(open_store(settings), settings.retrieval)
