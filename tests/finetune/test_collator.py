"""Padded and flattened batches carry the same tokens; token-budget batches respect the budget."""

from __future__ import annotations

import pytest
import torch

from finetune.collator import FlatteningCollator, PaddedCollator, TokenBudgetBatchSampler
from finetune.data import IGNORE_INDEX

FEATURES = [
    {"input_ids": [5, 6, 7], "labels": [IGNORE_INDEX, 6, 7], "score": 1.0, "pair_id": 0},
    {"input_ids": [8, 9], "labels": [IGNORE_INDEX, 9], "score": 0.0, "pair_id": 0},
]


def test_padded_batch_right_pads_with_ignored_labels():
    batch = PaddedCollator(pad_token_id=0)(FEATURES)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 9, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7], [IGNORE_INDEX, 9, IGNORE_INDEX]]
    assert batch["score"].tolist() == [1.0, 0.0] and batch["pair_id"].tolist() == [0, 0]
    assert next(iter(batch)) == "score"  # the Trainer reads the batch size off the first tensor


def test_flattened_batch_restarts_positions_per_sequence():
    batch = FlatteningCollator()([{**f, "ref_sum_logps": -1.5} for f in FEATURES])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    assert batch["seq_idx"].tolist() == [[0, 0, 0, 1, 1]]
    # The first token of each sequence is never a target, so no loss crosses a boundary.
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7, IGNORE_INDEX, 9]]
    assert "attention_mask" not in batch
    assert torch.equal(batch["ref_sum_logps"], torch.tensor([-1.5, -1.5]))


def _cost(lengths: list[int], batch: list[int], *, padded: bool) -> int:
    return max(lengths[i] for i in batch) * len(batch) if padded else sum(lengths[i] for i in batch)


def test_token_budget_batches_cover_every_row_once_within_budget():
    lengths = [30, 100, 70, 20, 90, 50, 60, 10, 80, 40]
    for padded in (False, True):
        sampler = TokenBudgetBatchSampler(lengths, 200, padded=padded, seed=1)
        batches = list(sampler)
        assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
        for batch in batches:
            cost = _cost(lengths, batch, padded=padded)
            assert cost <= 200
        sampler.set_epoch(1)
        assert len(list(sampler)) == len(sampler) == len(batches)
        assert sorted(map(tuple, sampler)) == sorted(map(tuple, batches))  # same batches, new order


def test_token_budget_below_the_longest_row_is_refused():
    with pytest.raises(ValueError, match="below the longest row"):
        TokenBudgetBatchSampler([10, 300], 200, padded=False, seed=0)


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("world_size", [2, 3, 4, 8])
def test_token_budget_batches_are_dealt_to_processes_without_repeats_or_drops(padded, world_size):
    """Simulated ranks through accelerate's own sharding (what `accelerator.prepare` wraps the sampler in):
    every row once, the same number of micro-batches per process, each within budget, and process r's k-th
    micro-batch is batch k * W + r of the one-process order (so W processes see the batches one process with
    W times the accumulation steps would)."""
    from accelerate.data_loader import BatchSamplerShard

    lengths = [(i * 37) % 190 + 10 for i in range(53)]
    sampler = TokenBudgetBatchSampler(lengths, 400, padded=padded, seed=3, world_size=world_size)
    assert len(sampler) % world_size == 0
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        order = list(sampler)
        ranks = [
            list(BatchSamplerShard(sampler, num_processes=world_size, process_index=rank))
            for rank in range(world_size)
        ]
        assert {len(batches) for batches in ranks} == {len(sampler) // world_size}
        rows = sorted(i for batches in ranks for batch in batches for i in batch)
        assert rows == list(range(len(lengths)))
        for rank, batches in enumerate(ranks):
            assert batches == order[rank::world_size]
            for batch in batches:
                cost = _cost(lengths, batch, padded=padded)
                assert 0 < cost <= 400


def test_batches_are_split_only_as_far_as_the_process_count_needs():
    lengths = [(i * 37) % 190 + 10 for i in range(53)]
    one = TokenBudgetBatchSampler(lengths, 400, padded=True, seed=3)
    assert len(one) == 17
    for world_size, extra in ((17, 0), (2, 1), (4, 3)):
        shared = TokenBudgetBatchSampler(lengths, 400, padded=True, seed=3, world_size=world_size)
        assert len(shared) == len(one) + extra
    assert TokenBudgetBatchSampler(lengths, 400, padded=True, seed=3, world_size=17).batches == one.batches


def test_too_few_rows_for_the_processes_are_refused():
    with pytest.raises(ValueError, match="cannot be dealt evenly to 4 processes"):
        TokenBudgetBatchSampler([150, 150, 150], 200, padded=True, seed=0, world_size=4)
