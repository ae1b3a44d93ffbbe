"""Content terms of a text: the cheap lexical signal that routing, grading and grounding share."""

from __future__ import annotations

import re

_WORD = re.compile(r"[a-z0-9][a-z0-9_.\-]*[a-z0-9]|[a-z0-9]")
STOPWORDS = frozenset(
    ["a", "an", "the", "and", "or", "but", "if", "then", "else", "of", "to", "in", "on", "at", "by", "for", "with", "from", "into", "about", "as", "is", "are", "was", "were", "be", "been", "being", "do", "does", "did", "doing", "have", "has", "had", "i", "me", "my", "we", "our", "you", "your", "he", "she", "it", "its", "they", "them", "their", "this", "that", "these", "those", "what", "which", "who", "whom", "whose", "when", "where", "why", "how", "can", "could", "should", "would", "will", "shall", "may", "might", "must", "not", "no", "yes", "so", "than", "too", "very", "just", "also", "there", "here", "all", "any", "some", "each", "more", "most", "other", "such", "only", "own", "same", "both", "few", "please", "tell", "explain", "show", "give", "me", "us", "let", "know", "want", "need", "get", "use", "using", "used", "way", "ok", "okay"]
)


def content_terms(text: str) -> list[str]:
    """Lower-cased words minus stopwords, in order of first appearance (no duplicates)."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(text.lower()):
        word = word.rstrip(".")
        if word and word not in STOPWORDS and len(word) > 1:
            seen.setdefault(_stem(word), None)
    return list(seen)


def overlap(terms: list[str], text: str) -> float:
    """Share of `terms` that occur among the content terms of `text` (0 when there are no terms)."""
    if not terms:
        return 0.0
    found = set(content_terms(text))
    return sum(term in found for term in terms) / len(terms)


def _stem(word: str) -> str:
    # Plural and simple verb endings only: enough for "documents"/"document", "ingesting"/"ingest".
    if len(word) > 6 and word.endswith("ing"):
        return word[:-3]
    if len(word) > 4 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word
