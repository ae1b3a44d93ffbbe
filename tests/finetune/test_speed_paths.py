"""The fast paths (precomputed reference and response-only logits, padded or packed, with or without the padding
mask) compute the plain path's loss, rewards and gradients on the same rows, on the embedded model."""

from __future__ import annotations

import pytest
import torch

from configs.settings import LoraSettings, ModelSettings, QuantizationSettings
from finetune.data import DataReport, pointwise_rows, tokenize_rows

pytestmark = pytest.mark.slow

PLAIN = {
    "precompute_ref_logps": False,
    "padding_free": False,
    "response_only_logits": False,
    "causal_mask_only": False,
}
FAST = {
    "padded": {"precompute_ref_logps": True, "padding_free": False, "response_only_logits": True},
    "padded, padding mask kept": {
        "precompute_ref_logps": True,
        "padding_free": False,
        "response_only_logits": True,
        "causal_mask_only": False,
    },
    "plain, causal mask only": {**PLAIN, "causal_mask_only": True},
    "packed": {"precompute_ref_logps": True, "padding_free": True, "response_only_logits": True},
    "packed, reference for positives": {
        "precompute_ref_logps": True,
        "padding_free": True,
        "response_only_logits": True,
        "reference_for_positives": True,
    },
}


@pytest.fixture(scope="module")
def model_and_rows(hh_records):
    from finetune.modeling import load_model

    # Full precision: the paths must agree to float32 rounding, which 4-bit would blur.
    settings = ModelSettings(quantization=QuantizationSettings(load_in_4bit="never"))
    model, tokenizer = load_model(settings, lora=LoraSettings(r=8, dropout=0.0), for_training=True)
    torch.manual_seed(0)
    with torch.no_grad():  # a non-trivial adapter, so the policy differs from the reference
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.02)
    # Four short real rows of different lengths: enough to exercise padding and packing, cheap on 2 CPU cores.
    rows = tokenize_rows(tokenizer, pointwise_rows(hh_records[:40], DataReport()), 96, DataReport())[:4]
    assert len({len(row["input_ids"]) for row in rows}) > 1
    return model, tokenizer, rows


def loss_and_grads(tmp_path, model, tokenizer, rows, flags):
    import datasets

    from finetune.ulma_config import UlmaConfig
    from finetune.ulma_trainer import UlmaTrainer

    config = UlmaConfig(
        output_dir=str(tmp_path / "out"), per_device_eval_batch_size=4, eval_strategy="no", **flags
    )
    trainer = UlmaTrainer(model, config, datasets.Dataset.from_list(rows), processing_class=tokenizer)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(rows))])
    model.train()
    model.zero_grad()
    output, logps = trainer.batch_loss(model, batch)
    output.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return output, logps, grads


@pytest.fixture(scope="module")
def plain(tmp_path_factory, model_and_rows):
    model, tokenizer, rows = model_and_rows
    return loss_and_grads(tmp_path_factory.mktemp("plain"), model, tokenizer, rows, PLAIN)


@pytest.mark.parametrize("layout", sorted(FAST))
def test_fast_path_matches_plain_loss_rewards_and_gradients(tmp_path, model_and_rows, plain, layout):
    model, tokenizer, rows = model_and_rows
    plain_output, plain_logps, plain_grads = plain
    fast, fast_logps, fast_grads = loss_and_grads(tmp_path, model, tokenizer, rows, FAST[layout])
    assert plain_output.rewards.abs().max() > 1e-4  # the adapter moved the policy away from the reference
    torch.testing.assert_close(fast.loss, plain_output.loss, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fast_logps, plain_logps, rtol=1e-4, atol=1e-5)
    # By default the precomputed reference skips score-1 rows (ulma's positive loss never reads it).
    flags = FAST[layout]
    has_reference = torch.tensor([row["score"] < 1.0 for row in rows]) | (
        flags.get("reference_for_positives", False) or not flags["precompute_ref_logps"]
    )
    assert fast.rewards[~has_reference].isnan().all()
    torch.testing.assert_close(
        fast.rewards[has_reference], plain_output.rewards[has_reference], rtol=1e-3, atol=1e-5
    )
    assert plain_grads.keys() == fast_grads.keys() and plain_grads
    for name, grad in plain_grads.items():
        torch.testing.assert_close(fast_grads[name], grad, rtol=1e-3, atol=1e-6, msg=name)
