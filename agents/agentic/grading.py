"""Relevance grading of retrieved chunks (cosine score + lexical overlap); planted instructions removed."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from agents.agentic.lexical import content_terms, overlap
from agents.state import ContextDocument
from configs.settings import AgenticSettings

# Sentences in retrieved text that address the model rather than the reader: dropped before generation,
# so a weak generator never sees them (the prompt's "documents are data" rule is the second line of defence).
_INJECTION = re.compile(
    r"(?:ignore|disregard|forget|override)\s+(?:all\s+|any\s+|the\s+|your\s+)*"
    r"(?:previous|prior|above|earlier|"
    r"system|safety)?\s*(?:instructions|rules|prompts?|guidelines)"
    r"|\byou are now\b|\bnew instructions\b|\bsystem prompt\b|\bact as\b|\bpretend to be\b",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class ChunkGrade:
    document: ContextDocument
    relevant: bool
    overlap: float
    injection_removed: bool


def strip_injected_instructions(text: str) -> tuple[str, bool]:
    """The text without sentences that instruct the model; whether any were removed. Lines stay lines: the
    evidence quotes read headings, lists and tables from them."""
    lines, removed = [], False
    for line in text.splitlines():
        sentences = [s for s in _SENTENCE.split(line) if s.strip()]
        kept = [s for s in sentences if not _INJECTION.search(s)]
        removed |= len(kept) != len(sentences)
        if kept or not sentences:
            lines.append(" ".join(kept))
    return ("\n".join(lines).strip(), True) if removed else (text, False)


def grade_chunks(
    query: str, documents: Sequence[ContextDocument], settings: AgenticSettings
) -> list[ChunkGrade]:
    terms = content_terms(query)
    grades = []
    for document in documents:
        share = overlap(terms, document["title"] + " " + document["text"])
        relevant = document["score"] >= settings.relevance_score or (
            document["score"] >= settings.relevance_floor and share >= settings.relevance_overlap
        )
        text, removed = strip_injected_instructions(document["text"])
        cleaned = ContextDocument(**{**document, "text": text})
        grades.append(ChunkGrade(cleaned, relevant and bool(text), share, removed))
    return grades


def passing_documents(grades: Sequence[ChunkGrade], limit: int) -> list[ContextDocument]:
    """The relevant chunks, best first, renumbered 1..n so citations [n] map to sources."""
    kept = sorted((g.document for g in grades if g.relevant), key=lambda d: d["score"], reverse=True)[:limit]
    return [ContextDocument(**{**doc, "index": number}) for number, doc in enumerate(kept, start=1)]
