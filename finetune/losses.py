"""The ULMA family of point-wise losses, as pure functions on tensors.

Notation: for a row (x, y) with score s in [0, 1], `logp` = log pi(y|x) under the policy and `ref_logp` under
the reference (both length-normalised when configured, as the ULMA reference code does), the log-ratio
`r = logp - ref_logp`, and the implicit reward `beta * r`. With `f = beta * r + c`:

- ulma:          positive  -logp                      negative  -log sigmoid(-f)
- pointwise_dpo: positive  -log sigmoid(f)            negative  -log sigmoid(-f)
- sft:           positive  -logp                      (no negatives)

A row's loss is `s * w_pos * positive + (1 - s) * w_neg * negative`, and the batch loss their mean, so every
row weighs the same and a batch of only positives or only negatives is well defined. (The reference code
averages positives and negatives separately and adds the two means, which NaNs on a batch without one kind and
doubles the step size on balanced batches.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F

from finetune.data import IGNORE_INDEX

LossType = Literal["ulma", "pointwise_dpo", "sft"]
LOSS_TYPES: tuple[str, ...] = get_args(LossType)
NEEDS_REFERENCE = {"ulma": True, "pointwise_dpo": True, "sft": False}


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[target] for each position, in float32: logits [..., V], targets [...] -> [...]."""
    logits = logits.float()
    return torch.gather(logits, -1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def sequence_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sequence: (sum of log-probs of the labelled tokens, number of labelled tokens).

    logits [B, T, V] from a causal LM, labels [B, T] aligned with the inputs (not shifted; `IGNORE_INDEX`
    where there is no target). Position t's logits predict token t + 1.
    """
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    per_token = token_logprobs(logits[:, :-1], targets.clamp(min=0))
    return (per_token * mask).sum(-1), mask.sum(-1)


def normalise(sum_logps: torch.Tensor, n_tokens: torch.Tensor, length_normalise: bool) -> torch.Tensor:
    """Mean log-prob per token (length-normalised) or the plain sum."""
    return sum_logps / n_tokens.clamp(min=1) if length_normalise else sum_logps


@dataclass(frozen=True)
class LossOutput:
    loss: torch.Tensor  # scalar, mean over rows
    per_row: torch.Tensor  # [B]
    # [B], beta * (logp - ref_logp), detached; zeros without a reference, NaN where the row's was skipped
    rewards: torch.Tensor


def pointwise_loss(
    logps: torch.Tensor,
    ref_logps: torch.Tensor | None,
    scores: torch.Tensor,
    *,
    loss_type: LossType = "ulma",
    beta: float = 0.1,
    margin: float = 0.0,
    positive_weight: float = 1.0,
    negative_weight: float = 1.0,
) -> LossOutput:
    """The loss of a batch of point-wise rows; see the module docstring for the formulas."""
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"unknown loss_type {loss_type!r}; choose one of {', '.join(LOSS_TYPES)}")
    if NEEDS_REFERENCE[loss_type] and ref_logps is None:
        raise ValueError(f"loss_type {loss_type!r} needs reference log-probs")
    scores = scores.to(logps.dtype)
    if ref_logps is None:
        rewards = torch.zeros_like(logps)
        logits = None
    else:
        rewards = beta * (logps - ref_logps)
        logits = rewards + margin
    positive = -F.logsigmoid(logits) if loss_type == "pointwise_dpo" else -logps
    if loss_type == "sft":
        per_row = scores * positive_weight * positive
    else:
        # A score-1 row has no negative part, and its reference may be absent (NaN, see
        # UlmaConfig.reference_for_positives): keep it out of the loss and its gradient (0 * NaN is NaN).
        negative = -F.logsigmoid(-torch.where(scores < 1.0, logits, 0.0))
        per_row = scores * positive_weight * positive + (1.0 - scores) * negative_weight * negative
    return LossOutput(loss=per_row.mean(), per_row=per_row, rewards=rewards.detach())
