"""The safety guard: judges user turns and answers against the Llama Guard 3 hazard taxonomy.

Kept light: importing this package loads no model and no torch; the backends load on `build_guard`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from agents.safety.verdict import SafetyGuard, Verdict
    from configs.settings import AppSettings

__all__ = ["build_guard", "refusal_message"]


def build_guard(
    settings: AppSettings, judge: Callable[[list[dict[str, str]]], str] | None = None
) -> SafetyGuard:
    """The guard named by `settings.safety.backend` (classifier, llama_guard or generator_judge)."""
    from agents.safety.factory import build_guard as build

    return build(settings, judge)


def refusal_message(verdict: Verdict) -> str:
    """One or two sentences saying what the service will not help with; never echoes the content."""
    from agents.safety.refusal import refusal_message as message

    return message(verdict)
