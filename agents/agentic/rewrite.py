"""Query rewriting for another retrieval attempt after too few chunks passed the grade."""

from __future__ import annotations

from collections.abc import Sequence

from agents.agentic.lexical import key_words, stem


def rewrite_query(question: str, attempt: int, earlier_questions: Sequence[str]) -> str:
    """Attempt 1: the question's key terms only (filler words dilute the embedding of a short query).
    Attempt 2 and later: those terms plus the previous user turn's, for a follow-up that lost its topic.
    """
    words = key_words(question)
    if attempt >= 2 and earlier_questions:
        own = {stem(word) for word in words}
        words += [word for word in key_words(earlier_questions[-1]) if stem(word) not in own]
    return " ".join(words) or question.strip()
