"""Query rewriting for another retrieval attempt after too few chunks passed the grade."""

from __future__ import annotations

from collections.abc import Sequence

from agents.agentic.lexical import content_terms


def rewrite_query(question: str, attempt: int, earlier_questions: Sequence[str]) -> str:
    """Attempt 1: the question's key terms only (filler words dilute the embedding of a short query).
    Attempt 2 and later: those terms plus the previous user turn's, for a follow-up that lost its topic.
    """
    terms = content_terms(question)
    if attempt >= 2 and earlier_questions:
        terms += [term for term in content_terms(earlier_questions[-1]) if term not in terms]
    return " ".join(terms) or question.strip()
