"""What the two backends that answer in Llama Guard's text format share: which turn they judge, and how
their answer becomes a verdict. Each backend only says how it obtains the answer (`_assess`).
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod

from agents.messages import ChatMessages
from agents.safety.llama_guard_format import GuardAnswer, Role
from agents.safety.verdict import Verdict

logger = logging.getLogger(__name__)


def judged_conversation(messages: ChatMessages, answer: str | None) -> tuple[ChatMessages, Role]:
    """The conversation to show the judge and whose last turn it judges: the user's, or the answer."""
    turns = [m for m in messages if m.get("role") in ("user", "assistant")]
    if answer is None:
        return turns, "User"
    return [*turns, {"role": "assistant", "content": answer}], "Agent"


def answer_to_verdict(
    answer: GuardAnswer,
    *,
    score: float,
    threshold: float | None,
    fail_closed: bool,
    backend: str,
    stage: str,
    started: float,
) -> Verdict:
    if threshold is not None:
        safe = score < threshold
    elif answer.parsed:
        safe = answer.safe
    else:
        logger.warning("%s gave an unreadable assessment; counted as %s", backend, "unsafe" if fail_closed else "safe")
        safe = not fail_closed
    return Verdict(
        safe=safe,
        categories=[] if safe else answer.categories,
        score=min(max(score, 0.0), 1.0),
        backend=backend,
        stage=stage,
        latency_ms=(time.perf_counter() - started) * 1000.0,
    )


class TextAnswerGuard(ABC):
    """A guard whose judge answers "safe" or "unsafe\\nS1,..." about the last turn of a conversation."""

    name: str

    def check_request(self, messages: ChatMessages) -> Verdict:
        return self._assess(*judged_conversation(messages, None), stage="request")

    def check_response(self, messages: ChatMessages, answer: str) -> Verdict:
        return self._assess(*judged_conversation(messages, answer), stage="response")

    @abstractmethod
    def _assess(self, conversation: ChatMessages, role: Role, *, stage: str) -> Verdict: ...
