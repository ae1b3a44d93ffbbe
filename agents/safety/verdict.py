"""What every safety backend returns, and the interface they share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol

from pydantic import BaseModel, Field

from agents.messages import ChatMessages

# Llama Guard 3 hazard taxonomy.
HAZARD_CATEGORIES: dict[str, str] = {
    "S1": "violent crimes",
    "S2": "non-violent crimes",
    "S3": "sex-related crimes",
    "S4": "child sexual exploitation",
    "S5": "defamation",
    "S6": "specialized advice",
    "S7": "privacy",
    "S8": "intellectual property",
    "S9": "indiscriminate weapons",
    "S10": "hate",
    "S11": "suicide and self-harm",
    "S12": "sexual content",
    "S13": "elections",
    "S14": "code interpreter abuse",
}


class Verdict(BaseModel):
    safe: bool
    categories: list[str] = Field(default_factory=list, description="hazard codes, e.g. ['S10']")
    score: float = Field(0.0, ge=0.0, le=1.0, description="probability of unsafe")
    backend: str
    stage: Literal["request", "response"]
    latency_ms: float = 0.0


class SafetyGuard(Protocol):
    """Judges a user turn, and an answer with the conversation in view."""

    name: str

    def check_request(self, messages: ChatMessages) -> Verdict: ...

    def check_response(self, messages: ChatMessages, answer: str) -> Verdict: ...


# The policy model as a judge: chat messages in, its text out (the `generator_judge` backend's model).
Judge = Callable[[ChatMessages], str]
