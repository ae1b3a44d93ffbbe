"""Per-turn routing by rules: conversation vs. knowledge base, and follow-ups made standalone."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from agents.agentic.lexical import content_terms, key_words, stem

Intent = Literal["conversation", "knowledge"]

# Small talk, and questions about this chat itself: answerable from the conversation alone.
_CONVERSATIONAL = re.compile(
    r"^\s*(?:(?:hi|hello|hey|good (?:morning|afternoon|evening)|thanks?(?: you)?|thank you|cheers|bye|goodbye"
    r"|ok(?:ay)?|great|cool|nice)\b[\s!.,]*(?:there|so much|a lot|again)?[\s!.,]*$"
    # A turn that only introduces the user ("Hi, I'm Ada."): remembered from the conversation, not searched for.
    r"|^\s*(?:(?:hi|hello|hey)\b[\s!.,]*)?(?:my name is|i'm|i am|call me)\s+[\w'-]+(?:\s+[\w'-]+)?[\s!.]*$"
    r"|how are you\b|who are you\b|what(?:'s| is) my name\b|what did i (?:just )?(?:say|ask)\b"
    r"|(?:what|which) was my (?:last|previous|first) question\b)",
    re.IGNORECASE,
)
# A question that leans on the previous turn for its topic.
_FOLLOW_UP_LEAD = re.compile(
    r"^\s*(?:and|also|what about|how about|and what about|then|so|but)\b"
    r"|\b(?:it|its|it's|that|this|they|them|"
    r"their|those|these|there)\b",
    re.IGNORECASE,
)
SHORT_QUESTION_TERMS = 3


def classify_turn(question: str) -> Intent:
    return "conversation" if _CONVERSATIONAL.search(question) else "knowledge"


def is_follow_up(question: str) -> bool:
    return bool(_FOLLOW_UP_LEAD.search(question)) or len(content_terms(question)) <= SHORT_QUESTION_TERMS


def standalone_query(question: str, earlier_questions: Sequence[str]) -> str:
    """The question, plus the previous user turn's key terms if it is a follow-up ("and its price?")."""
    if not earlier_questions or not is_follow_up(question):
        return question.strip()
    own = set(content_terms(question))
    carried = [word for word in key_words(earlier_questions[-1]) if stem(word) not in own]
    return f"{question.strip()} ({' '.join(carried)})" if carried else question.strip()
