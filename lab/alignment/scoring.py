"""Summed log-probabilities of the chosen and rejected responses of HH pairs under one model variant.

Rows are tokenized exactly as for training (`finetune.data.tokenize_example`: chat template, labels on the
response and its end-of-turn token) and scored with the trainer's response-only forward, so the numbers
here are the ones the training loss sees. A pair is dropped when either of its responses does not fit
`max_length`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from finetune.collator import PaddedCollator
from finetune.data import DataReport, pointwise_rows, tokenize_rows
from finetune.forward import response_logps

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

LOGIT_CHUNK_TOKENS = 4096


@dataclass(frozen=True)
class TokenizedPairs:
    chosen: list[dict[str, Any]]
    rejected: list[dict[str, Any]]
    report: DataReport

    @property
    def n_pairs(self) -> int:
        return len(self.chosen)


@dataclass(frozen=True)
class ResponseLogps:
    chosen: torch.Tensor  # [N] summed log-probs of the chosen responses
    rejected: torch.Tensor  # [N]
    chosen_tokens: torch.Tensor  # [N] response tokens of each chosen response


def tokenize_pairs(
    records: list[dict[str, Any]], tokenizer: PreTrainedTokenizerBase, max_length: int
) -> TokenizedPairs:
    """Chosen and rejected rows of each usable pair, aligned by index; unusable rows counted in the report."""
    report = DataReport()
    rows = tokenize_rows(tokenizer, pointwise_rows(records, report), max_length, report)
    by_pair: dict[int, dict[float, dict[str, Any]]] = {}
    for row in rows:
        by_pair.setdefault(row["pair_id"], {})[row["score"]] = row
    complete = [sides for sides in by_pair.values() if 1.0 in sides and 0.0 in sides]
    report.check(max_bad_share=1.0, what="held-out pairs")
    if len(complete) < len(by_pair):
        logger.info(
            "%d pairs lost one response to the checks above; scored %d",
            len(by_pair) - len(complete),
            len(complete),
        )
    return TokenizedPairs([s[1.0] for s in complete], [s[0.0] for s in complete], report)


@torch.inference_mode()
def sum_logps(
    model: PreTrainedModel,
    rows: list[dict[str, Any]],
    *,
    pad_token_id: int,
    batch_size: int,
    desc: str = "score",
    show_progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed response log-probs, response token counts) per row, in the rows' order."""
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    collate = PaddedCollator(pad_token_id=pad_token_id)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]), reverse=True)
    logps = torch.zeros(len(rows), dtype=torch.float64)
    tokens = torch.zeros(len(rows), dtype=torch.long)
    for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", disable=not show_progress):
        batch_ids = order[start : start + batch_size]
        batch = {k: v.to(model.device) for k, v in collate([rows[i] for i in batch_ids]).items()}
        batch_logps, batch_tokens = response_logps(
            model, causal_lm, batch, response_only_logits=True, chunk_size=LOGIT_CHUNK_TOKENS
        )
        logps[batch_ids] = batch_logps.double().cpu()
        tokens[batch_ids] = batch_tokens.long().cpu()
    return logps, tokens


def score_pairs(
    model: PreTrainedModel,
    pairs: TokenizedPairs,
    *,
    pad_token_id: int,
    batch_size: int,
    desc: str,
    show_progress: bool = False,
) -> ResponseLogps:
    chosen, chosen_tokens = sum_logps(
        model,
        pairs.chosen,
        pad_token_id=pad_token_id,
        batch_size=batch_size,
        desc=f"{desc} chosen",
        show_progress=show_progress,
    )
    rejected, _ = sum_logps(
        model,
        pairs.rejected,
        pad_token_id=pad_token_id,
        batch_size=batch_size,
        desc=f"{desc} rejected",
        show_progress=show_progress,
    )
    return ResponseLogps(chosen, rejected, chosen_tokens)
