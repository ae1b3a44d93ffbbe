"""Search over the knowledge base: dense top-k or MMR, optionally fused with BM25, filtered by metadata.

Every result's `score` is its cosine similarity to the query, whichever list found it, so one
relevance floor (`retrieval.min_relevance`) means the same thing in every mode; the order of the
results is the mode's own (fused rank, MMR selection).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from langchain_chroma import Chroma
from langchain_core.vectorstores.utils import maximal_marginal_relevance

from configs.settings import AppSettings, RetrievalSettings
from retrieval.lexical import LexicalIndex, bm25_dir
from retrieval.store import index_path, open_store

logger = logging.getLogger(__name__)

Where = dict[str, Any]  # a Chroma metadata filter, e.g. {"source": "docs/faq.md"} or {"page": {"$gte": 3}}


@dataclass(frozen=True)
class RetrievedChunk:
    id: str
    text: str
    source: str
    score: float  # cosine similarity: higher is more relevant
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def citation(self) -> str:
        """Where the passage is: "docs/guide.md > Setup > Install" or "manual.pdf, page 3"."""
        if self.metadata.get("heading"):
            return f"{self.source} > {self.metadata['heading']}"
        if self.metadata.get("page") is not None:
            return f"{self.source}, page {self.metadata['page']}"
        return self.source


@dataclass
class _Candidate:
    text: str
    metadata: dict[str, Any]
    embedding: np.ndarray | None = None
    similarity: float | None = None


def reciprocal_rank_fusion(rankings: Sequence[Sequence[str]], k: int) -> list[str]:
    """Ids ordered by sum of 1 / (k + rank) over the rankings (Cormack et al., 2009)."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores, key=lambda item: scores[item], reverse=True)


def convex_fusion(similarity: Mapping[str, float], bm25: Mapping[str, float], lexical_weight: float) -> list[str]:
    """Ids by (1 - lexical_weight) x cosine + lexical_weight x BM25 / the best BM25 of the query; an id BM25
    did not return scores 0 there. Unlike reciprocal rank fusion it keeps how far apart the scores are: a chunk
    far ahead on cosine is not passed by ones that merely appear in both lists (Bruch et al., 2023)."""
    best = max(bm25.values(), default=0.0) or 1.0
    score = {i: (1 - lexical_weight) * cosine + lexical_weight * bm25.get(i, 0.0) / best
             for i, cosine in similarity.items()}
    return sorted(score, key=lambda item: score[item], reverse=True)


class Retriever:
    """Embeds a query once, gathers candidates (dense, and BM25 when hybrid), fuses and ranks, drops weak ones."""

    def __init__(self, store: Chroma, settings: RetrievalSettings, lexical: LexicalIndex | None = None) -> None:
        self.store = store
        self.settings = settings
        self.lexical = lexical
        self._lexical_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="bm25")

    def search(
        self,
        query: str,
        k: int | None = None,
        *,
        where: Where | None = None,
        search_type: str | None = None,
        hybrid: bool | None = None,
    ) -> list[RetrievedChunk]:
        """The best `k` chunks for `query`; keyword arguments override the settings for this call."""
        if not query or not query.strip():
            raise ValueError("the search query is empty; pass the text to search for")
        k = self.settings.top_k if k is None else k
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        search_type = search_type or self.settings.search_type
        if search_type not in ("similarity", "mmr"):
            raise ValueError(f"search_type must be 'similarity' or 'mmr', not {search_type!r}")
        hybrid = self.settings.hybrid if hybrid is None else hybrid
        mmr = search_type == "mmr"
        pool = max(k, self.settings.fetch_k) if (mmr or hybrid) else k

        # tantivy releases the GIL: BM25 (1-15 ms at 100k chunks) runs while the query is embedded.
        lexical = None
        if hybrid and self.lexical is not None:
            lexical = self._lexical_pool.submit(self.lexical.search, query, pool)
        query_vector = np.asarray(self.store.embeddings.embed_query(query), dtype=np.float32)
        candidates, ranking = self._dense(query_vector, pool, where, with_embeddings=mmr)
        if lexical is not None:
            hits = dict(lexical.result())
            if self.settings.fusion == "rrf":
                fused = reciprocal_rank_fusion([ranking, list(hits)], self.settings.rrf_k)[:pool]
                # MMR chooses among the whole pool; similarity needs only the fused top k.
                self._read_lexical_hits(fused, candidates, query_vector, where, len(fused) if mmr else k)
            else:
                missing = [i for i in hits if i not in candidates]  # each hit's cosine is part of its score
                if missing:
                    self._fetch(missing, candidates, query_vector, where)
                similarity = {i: candidate.similarity or 0.0 for i, candidate in candidates.items()}
                fused = convex_fusion(similarity, hits, self.settings.lexical_weight)[:pool]
            ranking = [i for i in fused if i in candidates]  # a filtered-out lexical hit is not a candidate
        if mmr:
            ranking = self._mmr(query_vector, ranking, candidates, k)
        chunks = [self._chunk(i, candidates[i]) for i in ranking[:k]]
        relevant = [chunk for chunk in chunks if chunk.score >= self.settings.min_relevance]
        logger.debug(
            "query %r (%s%s): %d hits, %d at or above relevance %.2f", query[:80], search_type,
            "+bm25" if hybrid else "", len(chunks), len(relevant), self.settings.min_relevance,
        )
        return relevant

    def adjacent(self, ids: Sequence[str], step: int = 1, *, same_section: bool = False) -> list[RetrievedChunk]:
        """The chunk `step` places after each of `ids` in its file (same source; a negative step reads before),
        in the order of `ids`, leaving out those among `ids`: a list cut from its lead-in, or a paragraph cut at a
        chunk boundary, is read on. With `same_section`, only a chunk under the same heading path as the one it
        neighbours (a section's opening cut off from the rest of it; none in a file without headings). Such a
        chunk was not scored against the query: its score is 0."""
        if not ids:
            return []
        got = self.store._collection.get(ids=list(ids), include=["metadatas"])
        origin = {chunk_id: metadata for chunk_id, metadata in zip(got["ids"], got["metadatas"], strict=True)
                  if metadata and isinstance(metadata.get("chunk_index"), int)}
        place_of = {chunk_id: (metadata.get("source"), metadata["chunk_index"] + step)
                    for chunk_id, metadata in origin.items()}
        if not place_of:
            return []
        clauses: list[Where] = [{"$and": [{"source": source}, {"chunk_index": index}]}
                                for source, index in set(place_of.values())]
        found = self.store._collection.get(
            where=clauses[0] if len(clauses) == 1 else {"$or": clauses}, include=["documents", "metadatas"]
        )
        at = {}  # (source, chunk_index) -> the chunk there
        for chunk_id, text, metadata in zip(found["ids"], found["documents"], found["metadatas"], strict=True):
            at[(metadata.get("source"), metadata.get("chunk_index"))] = self._chunk(
                chunk_id, _Candidate(text=text, metadata=dict(metadata), similarity=0.0)
            )
        neighbours: list[RetrievedChunk] = []
        for chunk_id in ids:
            neighbour = at.get(place_of.get(chunk_id))
            if neighbour is None or neighbour.id in ids or neighbour in neighbours:
                continue
            heading = origin[chunk_id].get("heading")
            if same_section and (not heading or neighbour.metadata.get("heading") != heading):
                continue  # another section, or a file without headings: where its section starts is unknown
            neighbours.append(neighbour)
        return neighbours

    def _dense(
        self, query_vector: np.ndarray, n: int, where: Where | None, *, with_embeddings: bool
    ) -> tuple[dict[str, _Candidate], list[str]]:
        include = ["documents", "metadatas", "distances"] + (["embeddings"] if with_embeddings else [])
        result = self.store._collection.query(
            query_embeddings=[query_vector.tolist()], n_results=n, where=where or None, include=include
        )
        candidates: dict[str, _Candidate] = {}
        embeddings = result.get("embeddings")
        for position, chunk_id in enumerate(result["ids"][0]):
            candidates[chunk_id] = _Candidate(
                text=result["documents"][0][position],
                metadata=dict(result["metadatas"][0][position] or {}),
                # The collection uses cosine distance over normalized vectors: similarity = 1 - distance.
                similarity=1.0 - result["distances"][0][position],
                embedding=np.asarray(embeddings[0][position]) if with_embeddings else None,
            )
        return candidates, list(result["ids"][0])

    def _read_lexical_hits(
        self, fused: list[str], candidates: dict[str, _Candidate], query_vector: np.ndarray, where: Where | None,
        need: int,
    ) -> None:
        """Read from Chroma the lexical hits that dense search did not return, in fused order, until the
        first `need` usable ones are candidates: most queries need one small read, or none."""
        tried: set[str] = set()
        while True:
            usable = [i for i in fused if i in candidates or i not in tried]
            missing = [i for i in usable[:need] if i not in candidates]
            if not missing:
                return
            self._fetch(missing, candidates, query_vector, where)
            tried.update(missing)  # one the filter refused stays out; the next in line gets its turn

    def _fetch(
        self, ids: list[str], candidates: dict[str, _Candidate], query_vector: np.ndarray, where: Where | None
    ) -> None:
        """Read chunks by id, and score them by cosine like the dense hits."""
        got = self.store._collection.get(
            ids=ids, where=where or None, include=["documents", "metadatas", "embeddings"]
        )
        for position, chunk_id in enumerate(got["ids"]):
            embedding = np.asarray(got["embeddings"][position], dtype=np.float32)
            candidates[chunk_id] = _Candidate(
                text=got["documents"][position],
                metadata=dict(got["metadatas"][position] or {}),
                embedding=embedding,
                similarity=float(query_vector @ embedding),
            )

    def _mmr(self, query_vector: np.ndarray, ranking: list[str], candidates: dict[str, _Candidate], k: int) -> list[str]:
        with_vectors = [i for i in ranking if candidates[i].embedding is not None]
        if not with_vectors:
            return []
        matrix = np.stack([candidates[i].embedding for i in with_vectors])
        chosen = maximal_marginal_relevance(query_vector, matrix, lambda_mult=self.settings.mmr_lambda, k=k)
        return [with_vectors[index] for index in chosen]

    @staticmethod
    def _chunk(chunk_id: str, candidate: _Candidate) -> RetrievedChunk:
        return RetrievedChunk(
            id=chunk_id,
            text=candidate.text,
            source=str(candidate.metadata.get("source", "")),
            score=float(candidate.similarity or 0.0),
            metadata=candidate.metadata,
        )


def build_retriever(settings: AppSettings, store: Chroma | None = None) -> Retriever:
    return Retriever(store or open_store(settings), settings.retrieval, LexicalIndex(bm25_dir(index_path(settings))))
