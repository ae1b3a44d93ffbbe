"""Is the answer supported by the chunks it cites? Per sentence: embedding similarity or term overlap.

Similarity alone passes a sentence on the right topic with the wrong facts ("the default port is 5672"),
so a sentence whose numbers do not all occur in its evidence is unsupported, however similar.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from agents.agentic.lexical import content_terms, overlap
from agents.state import ContextDocument
from configs.settings import AgenticSettings

_CITATION = re.compile(r"\[(\d+)\]")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
MIN_SENTENCE_TERMS = 3  # shorter fragments ("Sure!", "Yes [1].") carry no claim to check


class EmbedsTexts(Protocol):
    def embed_documents(self, texts: list[str]) -> list[list[float]]: ...


@dataclass(frozen=True)
class GroundingReport:
    claims: int
    supported: int
    invalid_citations: list[int]
    grounded: bool

    def summary(self) -> str:
        bad = f",bad_citations={self.invalid_citations}" if self.invalid_citations else ""
        return f"supported={self.supported}/{self.claims}{bad}"


class GroundingChecker:
    def __init__(self, embeddings: EmbedsTexts, settings: AgenticSettings) -> None:
        self.embeddings = embeddings
        self.settings = settings

    def check(self, answer: str, documents: Sequence[ContextDocument]) -> GroundingReport:
        by_index = {doc["index"]: doc for doc in documents}
        sentences = _SENTENCE.split(answer)
        claims = [s for s in sentences if len(content_terms(_CITATION.sub("", s))) >= MIN_SENTENCE_TERMS]
        cited = {int(n) for n in _CITATION.findall(answer)}
        invalid = sorted(cited - by_index.keys())
        if not claims:
            return GroundingReport(0, 0, invalid, grounded=not invalid)
        # A sentence is checked against the chunks it cites, or all of them when it cites none.
        evidence = [
            [by_index[int(n)] for n in _CITATION.findall(claim) if int(n) in by_index] or list(documents)
            for claim in claims
        ]
        texts = [_CITATION.sub("", claim).strip() for claim in claims]
        vectors = np.asarray(self.embeddings.embed_documents(texts + [doc["text"] for doc in documents]))
        claim_vectors, doc_vectors = vectors[: len(texts)], vectors[len(texts) :]
        position = {doc["index"]: row for row, doc in enumerate(documents)}
        supported = 0
        for text, claim_vector, docs in zip(texts, claim_vectors, evidence):
            similarity = max(float(claim_vector @ doc_vectors[position[doc["index"]]]) for doc in docs)
            evidence_text = " ".join(doc["text"] for doc in docs)
            share = overlap(content_terms(text), evidence_text)
            numbers_found = set(_NUMBER.findall(text)) <= set(_NUMBER.findall(evidence_text))
            supported += numbers_found and (
                similarity >= self.settings.grounding_similarity or share >= self.settings.grounding_overlap
            )
        grounded = not invalid and supported >= self.settings.grounded_share * len(claims)
        return GroundingReport(len(claims), supported, invalid, grounded)
