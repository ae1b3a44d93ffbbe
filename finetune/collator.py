"""Batches of tokenized point-wise rows: padded (the plain path) or flattened into one row (padding-free).

Both carry the per-row fields the loss needs: `score`, `pair_id` and, when precomputed, `ref_sum_logps`.
The flattened layout is transformers' `DataCollatorWithFlattening`: the micro-batch's sequences are
concatenated into one row whose `position_ids` restart at 0 per sequence, which the attention (sdpa, flash,
flex) turns into per-sequence causal masks; `seq_idx` says which row each token belongs to.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Sampler
from transformers import DataCollatorWithFlattening

from finetune.data import IGNORE_INDEX

ROW_FIELDS = ("score", "pair_id", "ref_sum_logps")


def _row_fields(features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    # These lead the batch dict: the Trainer takes the batch size from its first tensor, and a flattened
    # input_ids row would say 1.
    batch = {
        "score": torch.tensor([float(f["score"]) for f in features], dtype=torch.float32),
        "pair_id": torch.tensor([int(f["pair_id"]) for f in features], dtype=torch.long),
    }
    if "ref_sum_logps" in features[0]:
        batch["ref_sum_logps"] = torch.tensor(
            [float(f["ref_sum_logps"]) for f in features], dtype=torch.float32
        )
    return batch


@dataclass
class PaddedCollator:
    """Right-padded `input_ids`, `attention_mask` and `labels` ([B, T])."""

    pad_token_id: int

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)
        input_ids = torch.full((len(features), longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), longest), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(features), longest), dtype=torch.long)
        for row, feature in enumerate(features):
            n = len(feature["input_ids"])
            input_ids[row, :n] = torch.as_tensor(feature["input_ids"])
            labels[row, :n] = torch.as_tensor(feature["labels"])
            attention_mask[row, :n] = 1
        return {
            **_row_fields(features),
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": labels,
        }


class FlatteningCollator:
    """One row `[1, sum of lengths]` with restarting `position_ids` and `seq_idx`; no padding at all."""

    def __init__(self) -> None:
        # The flash kwargs (cu_seq_lens, max_length) let a flash kernel take the sequence bounds as given;
        # without them transformers derives them from position_ids in every attention call, with a host sync.
        self._flatten = DataCollatorWithFlattening(
            return_position_ids=True, return_seq_idx=True, return_flash_attn_kwargs=True
        )

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        tokens = [{"input_ids": f["input_ids"], "labels": f["labels"]} for f in features]
        batch = self._flatten(tokens)
        batch["seq_idx"] = batch["seq_idx"].long()
        return {**_row_fields(features), **batch}


class TokenBudgetBatchSampler(Sampler[list[int]]):
    """Micro-batches holding at most `max_tokens` tokens: the sum of lengths when flattened, or the longest
    length times the row count when padded (then rows are grouped by length to waste little padding).

    The batches are formed once, so every epoch has the same number of steps (the Trainer's schedule and
    `--resume` rely on that); their order is reshuffled every epoch, identically in every process.

    Under data parallelism accelerate deals the batches out round-robin (process r takes batches r, r + W, ...);
    for every process to get the same number without repeating or dropping a row, the batch count is made a
    multiple of `world_size` by halving the batches with the most rows. Process r's k-th micro-batch is then
    batch k * W + r of the one-process order, so W processes with G accumulation steps see exactly the
    micro-batches one process with W * G accumulation steps does.
    """

    def __init__(
        self, lengths: Sequence[int], max_tokens: int, *, padded: bool, seed: int, world_size: int = 1
    ) -> None:
        if max(lengths) > max_tokens:
            raise ValueError(
                f"max_tokens_per_batch={max_tokens} is below the longest row ({max(lengths)} tokens)"
            )
        self.seed = seed
        self.epoch = 0
        order = list(range(len(lengths)))
        random.Random(seed).shuffle(order)
        if padded:
            order.sort(key=lambda i: lengths[i])
        self.batches: list[list[int]] = []
        batch: list[int] = []
        longest = total = 0
        for index in order:
            length = lengths[index]
            cost = max(longest, length) * (len(batch) + 1) if padded else total + length
            if batch and cost > max_tokens:
                self.batches.append(batch)
                batch, longest, total = [], 0, 0
            batch.append(index)
            longest, total = max(longest, length), total + length
        if batch:
            self.batches.append(batch)
        self._split_for(world_size)

    def _split_for(self, world_size: int) -> None:
        while len(self.batches) % world_size:
            largest = max(range(len(self.batches)), key=lambda i: len(self.batches[i]))
            batch = self.batches[largest]
            if len(batch) < 2:
                raise ValueError(
                    f"{len(self.batches)} one-row micro-batches cannot be dealt evenly to {world_size} processes "
                    "without repeating or dropping a row: use more rows or fewer processes"
                )
            # Fewer rows never cost more tokens, padded or flattened, so both halves stay within the budget.
            half = len(batch) // 2
            self.batches[largest : largest + 1] = [batch[:half], batch[half:]]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        order = list(range(len(self.batches)))
        random.Random(self.seed + self.epoch).shuffle(order)
        return iter([self.batches[i] for i in order])
