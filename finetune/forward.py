"""Per-row log-probs of the response tokens: the plain computation, and the one that skips most of the work.

Plain: the model's full-vocabulary logits at every position, then `losses.sequence_logprobs`.
Response-only (`response_only_logits`): the forward stops at the last hidden states (captured by a hook on
the decoder while the causal LM is asked for the logits of one position only), the response positions are
selected, and lm_head + log-softmax run on those alone, in chunks that are recomputed in the backward pass,
so no [tokens x vocab] float32 tensor is ever held for the whole batch. The model is still called through its
own forward (and any DDP wrapper), so hooks, adapters and gradient synchronisation behave as usual.

Both take a padded batch ([B, T] with `attention_mask`) or a flattened one ([1, N] with `position_ids` and
`seq_idx`) and return (sum of log-probs, number of response tokens) per row.

`causal_mask_only` leaves the padding mask out of a right-padded batch: under a causal mask a real token only
sees earlier positions, which are all real, so every non-padding token's output is unchanged, while sdpa can
then take its flash kernel (`is_causal`) instead of the slower one that reads an explicit mask. The padding
positions' outputs change, and nothing reads them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from finetune.data import IGNORE_INDEX
from finetune.losses import sequence_logprobs, token_logprobs

# The last four come with a flattened batch: the sequence bounds a flash kernel reads (others ignore them).
MODEL_INPUTS = ("input_ids", "attention_mask", "position_ids", "cu_seq_lens_q", "cu_seq_lens_k", "max_length_q",
                "max_length_k")


def model_inputs(batch: dict[str, Any], causal_mask_only: bool = False) -> dict[str, Any]:
    # Right padding only (PaddedCollator): see the module docstring.
    skipped = {"attention_mask"} if causal_mask_only else set()
    return {key: batch[key] for key in MODEL_INPUTS if key in batch and key not in skipped}


def n_rows(batch: dict[str, Any]) -> int:
    return int(batch["score"].shape[0])


def _row_of_token(batch: dict[str, Any]) -> torch.Tensor:
    """[B, T] index of the row each token belongs to."""
    if "seq_idx" in batch:
        return batch["seq_idx"]
    rows, length = batch["input_ids"].shape
    return torch.arange(rows, device=batch["input_ids"].device).unsqueeze(1).expand(rows, length)


def _sum_per_row(per_token: torch.Tensor, rows: torch.Tensor, n: int) -> torch.Tensor:
    return torch.zeros(n, dtype=per_token.dtype, device=per_token.device).index_add(0, rows, per_token)


def full_logits_logps(
    model: nn.Module, batch: dict[str, Any], causal_mask_only: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """The straightforward computation: full logits everywhere, then log-probs of the labelled tokens."""
    logits = model(**model_inputs(batch, causal_mask_only), use_cache=False).logits
    if "seq_idx" not in batch:
        return sequence_logprobs(logits, batch["labels"])
    targets = batch["labels"][:, 1:]
    mask = targets != IGNORE_INDEX
    per_token = token_logprobs(logits[:, :-1][mask], targets[mask])
    rows = _row_of_token(batch)[:, 1:][mask]
    return _sum_per_row(per_token, rows, n_rows(batch)), _sum_per_row(
        torch.ones_like(per_token), rows, n_rows(batch)
    )


@contextmanager
def capture_output(module: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    captured: dict[str, torch.Tensor] = {}

    def hook(_module: nn.Module, _args: Any, output: Any) -> None:
        captured["hidden"] = output[0] if isinstance(output, tuple) else output.last_hidden_state

    handle = module.register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


def _chunk_logprobs(lm_head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return token_logprobs(lm_head(hidden), targets)


def response_only_logps(
    model: nn.Module,
    causal_lm: nn.Module,
    batch: dict[str, Any],
    chunk_size: int,
    causal_mask_only: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """lm_head and log-softmax only at response positions. `model` is what to call (PEFT/DDP wrappers
    included); `causal_lm` is the unwrapped transformers model whose decoder and lm_head are used."""
    with capture_output(causal_lm.get_decoder()) as captured:
        model(**model_inputs(batch, causal_mask_only), use_cache=False, logits_to_keep=1)
    targets = batch["labels"][:, 1:]
    mask = targets != IGNORE_INDEX
    hidden = captured["hidden"][:, :-1][mask]
    targets = targets[mask]
    lm_head = causal_lm.get_output_embeddings()
    pieces = []
    for start in range(0, hidden.shape[0], chunk_size):
        h, t = hidden[start : start + chunk_size], targets[start : start + chunk_size]
        if torch.is_grad_enabled():
            # Recompute the chunk's logits in backward instead of keeping [chunk x vocab] floats alive.
            pieces.append(checkpoint(_chunk_logprobs, lm_head, h, t, use_reentrant=False))
        else:
            pieces.append(_chunk_logprobs(lm_head, h, t))
    per_token = torch.cat(pieces) if pieces else hidden.new_zeros(0, dtype=torch.float32)
    rows = _row_of_token(batch)[:, 1:][mask]
    n = n_rows(batch)
    return _sum_per_row(per_token, rows, n), _sum_per_row(torch.ones_like(per_token), rows, n)


def response_logps(
    model: nn.Module,
    causal_lm: nn.Module,
    batch: dict[str, Any],
    *,
    response_only_logits: bool,
    chunk_size: int,
    causal_mask_only: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of response log-probs, number of response tokens) per row, by the configured computation."""
    if response_only_logits:
        return response_only_logps(model, causal_lm, batch, chunk_size, causal_mask_only)
    return full_logits_logps(model, batch, causal_mask_only)
