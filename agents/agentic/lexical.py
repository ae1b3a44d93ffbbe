"""Content terms of a text: the cheap lexical signal that routing, grading and grounding share."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from functools import lru_cache

import snowballstemmer

_WORD = re.compile(r"[a-z0-9][a-z0-9_.\-]*[a-z0-9]|[a-z0-9]")
STOPWORDS = frozenset(
    ["a", "an", "the", "and", "or", "but", "if", "then", "else", "of", "to", "in", "on", "at", "by", "for", "with", "from", "into", "about", "as", "is", "are", "was", "were", "be", "been", "being", "do", "does", "did", "doing", "have", "has", "had", "i", "me", "my", "we", "our", "you", "your", "he", "she", "it", "its", "they", "them", "their", "this", "that", "these", "those", "what", "which", "who", "whom", "whose", "when", "where", "why", "how", "can", "could", "should", "would", "will", "shall", "may", "might", "must", "not", "no", "yes", "so", "than", "too", "very", "just", "also", "there", "here", "all", "any", "some", "each", "more", "most", "other", "such", "only", "own", "same", "both", "few", "please", "tell", "explain", "show", "give", "me", "us", "let", "know", "want", "need", "get", "use", "using", "used", "way", "ok", "okay"]
)


def content_terms(text: str) -> list[str]:
    """The stems of a text's content words (lower-cased, minus stopwords), in order of first appearance."""
    return list(dict.fromkeys(stem(word) for word in _content_words(text)))


def key_words(text: str) -> list[str]:
    """A text's content words as written (lower-cased), one per stem, in order: the terms of a query to search
    with (a stem such as "servic" is not a word a search index or an embedder knows)."""
    first: dict[str, str] = {}
    for word in _content_words(text):
        first.setdefault(stem(word), word)
    return list(first.values())


def _content_words(text: str) -> Iterator[str]:
    for word in _WORD.findall(text.lower()):
        word = word.rstrip(".")
        if word and word not in STOPWORDS and len(word) > 1:
            yield word


def overlap(terms: list[str], text: str) -> float:
    """Share of `terms` that occur among the content terms of `text` (0 when there are no terms)."""
    if not terms:
        return 0.0
    found = set(content_terms(text))
    return sum(term in found for term in terms) / len(terms)


_ENGLISH = snowballstemmer.stemmer("english")
_ENGLISH_LOCK = threading.Lock()  # a stemmer keeps its word in its own fields: one word at a time


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """The Snowball English stem: "documents", "documented" -> "document"; "assessment" -> "assess"."""
    with _ENGLISH_LOCK:
        return _ENGLISH.stemWord(word)
