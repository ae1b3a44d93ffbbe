"""The `generator_judge` backend: the policy model itself, asked in Llama Guard's format (a fallback).

Only the model's text is available (no logits), so the score is 1.0 for unsafe, 0.0 for safe and 0.5
for an answer that said neither (decided by `safety.fail_closed`).
"""

from __future__ import annotations

import time

from agents.messages import ChatMessages
from agents.safety.llama_guard_format import Role, parse_guard_output, task_text
from agents.safety.text_guard import TextAnswerGuard, answer_to_verdict
from agents.safety.verdict import Judge, Verdict
from configs.settings import AppSettings, ConfigError


class GeneratorJudgeGuard(TextAnswerGuard):
    name = "generator_judge"

    def __init__(self, judge: Judge, *, categories: list[str], fail_closed: bool = True) -> None:
        self.judge = judge
        self.categories = categories
        self.fail_closed = fail_closed

    @classmethod
    def from_settings(cls, settings: AppSettings, judge: Judge | None = None) -> GeneratorJudgeGuard:
        if judge is None:
            raise ConfigError(
                "safety.backend 'generator_judge' needs the policy model as judge; pass judge=... to build_guard "
                "or choose safety.backend 'classifier'"
            )
        return cls(judge, categories=settings.safety.llama_guard_categories, fail_closed=settings.safety.fail_closed)

    def _assess(self, conversation: ChatMessages, role: Role, *, stage: str) -> Verdict:
        started = time.perf_counter()
        reply = self.judge([{"role": "user", "content": task_text(conversation, role, self.categories)}])
        answer = parse_guard_output(reply)
        score = 0.5 if not answer.parsed else (0.0 if answer.safe else 1.0)
        return answer_to_verdict(
            answer,
            score=score,
            threshold=None,
            fail_closed=self.fail_closed,
            backend=self.name,
            stage=stage,
            started=started,
        )
