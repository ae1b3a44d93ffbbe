"""The evaluation's numbers as pure functions: rates with Wilson intervals, preference metrics, perplexity.

Implicit reward of a response y to a conversation x (DPO's convention, summed over the response tokens):
`r(x, y) = beta * (log pi_adapter(y|x) - log pi_base(y|x))`. A pair is ranked correctly when
`r(chosen) > r(rejected)` (a tie counts as wrong); the margin is `r(chosen) - r(rejected)`.
Perplexity of a set of responses is `exp(total negative log-likelihood / total response tokens)`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from scipy.stats import binomtest

CONFIDENCE = 0.95


def wilson_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion; honest at small n and at rates near 0 or 1."""
    if n <= 0:
        raise ValueError("a rate needs at least one trial")
    interval = binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)


@dataclass(frozen=True)
class Rate:
    successes: int
    n: int
    rate: float
    ci95: tuple[float, float]

    @classmethod
    def of(cls, outcomes: Sequence[bool]) -> Rate:
        successes = sum(bool(outcome) for outcome in outcomes)
        return cls(
            successes, len(outcomes), successes / len(outcomes), wilson_interval(successes, len(outcomes))
        )

    def to_dict(self) -> dict:
        return {**asdict(self), "ci95": list(self.ci95)}


@dataclass(frozen=True)
class PreferenceMetrics:
    n_pairs: int
    accuracy: Rate
    mean_margin: float
    mean_chosen_reward: float
    mean_rejected_reward: float

    def to_dict(self) -> dict:
        return {**asdict(self), "accuracy": self.accuracy.to_dict()}


def preference_metrics(
    policy_chosen: torch.Tensor,
    reference_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float,
) -> PreferenceMetrics:
    """Metrics of the implicit reward over pairs; each argument is the summed response log-prob per pair."""
    chosen_reward = beta * (policy_chosen - reference_chosen)
    rejected_reward = beta * (policy_rejected - reference_rejected)
    margins = chosen_reward - rejected_reward
    return PreferenceMetrics(
        n_pairs=int(margins.numel()),
        accuracy=Rate.of((margins > 0).tolist()),
        mean_margin=float(margins.mean()),
        mean_chosen_reward=float(chosen_reward.mean()),
        mean_rejected_reward=float(rejected_reward.mean()),
    )


def perplexity(sum_logps: torch.Tensor, n_tokens: torch.Tensor) -> float:
    """exp(total NLL / total tokens) over a set of responses (token-weighted, not a mean over rows)."""
    total_tokens = int(n_tokens.sum())
    if total_tokens == 0:
        raise ValueError("perplexity needs at least one response token")
    return math.exp(-float(sum_logps.sum()) / total_tokens)
