"""Choose and build the safety backend named by `safety.backend`: the one place that knows them all."""

from __future__ import annotations

import logging
from collections.abc import Callable

from agents.safety.verdict import SafetyGuard
from configs.settings import AppSettings, ConfigError

logger = logging.getLogger(__name__)

Judge = Callable[[list[dict[str, str]]], str]


def build_guard(settings: AppSettings, judge: Judge | None = None) -> SafetyGuard:
    """The configured guard. `judge` (chat messages -> the policy model's text) serves `generator_judge`."""
    safety = settings.safety
    if safety.backend == "classifier":
        from agents.safety.classifier import EmbeddingClassifierGuard

        return EmbeddingClassifierGuard.load(
            safety.classifier_path,
            device=settings.embedding.device,
            request_threshold=safety.request_threshold,
            response_threshold=safety.response_threshold,
            category_min_probability=safety.category_min_probability,
        )
    if safety.backend == "llama_guard":
        from agents.safety.llama_guard import LlamaGuardGuard

        return LlamaGuardGuard.load(settings)
    if safety.backend == "generator_judge":
        if judge is None:
            raise ConfigError(
                "safety.backend 'generator_judge' needs the policy model as judge; pass judge=... to build_guard "
                "or choose safety.backend 'classifier'"
            )
        from agents.safety.judge import GeneratorJudgeGuard

        return GeneratorJudgeGuard(judge, categories=safety.llama_guard_categories, fail_closed=safety.fail_closed)
    raise ConfigError(f"unknown safety.backend {safety.backend!r}; use classifier, llama_guard or generator_judge")
