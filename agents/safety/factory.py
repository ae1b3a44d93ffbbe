"""Build the guard named by `safety.backend`: the one table of backends, each built from the settings."""

from __future__ import annotations

from typing import Protocol

from agents.safety.classifier import EmbeddingClassifierGuard
from agents.safety.judge import GeneratorJudgeGuard
from agents.safety.llama_guard import LlamaGuardGuard
from agents.safety.verdict import Judge, SafetyGuard
from configs.settings import AppSettings


class GuardBackend(Protocol):
    @classmethod
    def from_settings(cls, settings: AppSettings, judge: Judge | None = None) -> SafetyGuard: ...


# The keys are `SafetySettings.backend`'s choices; the settings reject any other name.
BACKENDS: dict[str, type[GuardBackend]] = {
    "classifier": EmbeddingClassifierGuard,
    "llama_guard": LlamaGuardGuard,
    "generator_judge": GeneratorJudgeGuard,
}


def build_guard(settings: AppSettings, judge: Judge | None = None) -> SafetyGuard:
    """The configured guard. `judge` (chat messages -> the policy model's text) serves `generator_judge`."""
    return BACKENDS[settings.safety.backend].from_settings(settings, judge)
