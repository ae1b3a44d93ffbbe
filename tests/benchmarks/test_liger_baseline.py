"""The fair baseline's Liger log-probs (TRL's `use_liger_kernel` path) equal the full-logits log-probs and give
the same adapter gradients, on a small random Llama on the GPU (Liger's kernels are Triton: CUDA only)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from finetune.data import IGNORE_INDEX

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available() or importlib.util.find_spec("liger_kernel") is None,
    reason="Liger's fused linear cross-entropy needs CUDA and liger-kernel",
)


def _model_and_batch():
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=3000, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, attn_implementation="sdpa",
    )
    base = LlamaForCausalLM(config).to("cuda", torch.bfloat16)
    model = get_peft_model(base, LoraConfig(r=8, target_modules="all-linear", lora_dropout=0.0))
    with torch.no_grad():  # a non-trivial adapter, so the adapter's gradients are not all zero
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.02)
    input_ids = torch.randint(0, config.vocab_size, (3, 40), device="cuda")
    labels = input_ids.clone()
    labels[:, :15] = IGNORE_INDEX  # the prompt
    labels[2, 30:] = IGNORE_INDEX  # a shorter, right-padded row
    attention_mask = torch.ones_like(input_ids)
    attention_mask[2, 30:] = 0
    return model, {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def _logps_and_grads(model, batch, compute):
    model.zero_grad()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        sums, counts = compute(model, batch)
    sums.sum().backward()
    grads = {n: p.grad.float().clone() for n, p in model.named_parameters() if p.grad is not None}
    return sums.detach().float(), counts, grads


def test_liger_logps_match_full_logits_and_gradients():
    from benchmarks.throughput_runs import liger_logps
    from finetune.forward import full_logits_logps

    model, batch = _model_and_batch()
    plain, plain_counts, plain_grads = _logps_and_grads(model, batch, full_logits_logps)
    fused, fused_counts, fused_grads = _logps_and_grads(model, batch, liger_logps)
    assert fused_counts.tolist() == plain_counts.tolist() == [25, 25, 15]
    torch.testing.assert_close(fused, plain, rtol=2e-2, atol=0.5)  # sums over 15-25 bf16 log-probs
    assert plain_grads.keys() == fused_grads.keys() and plain_grads
    for name, grad in plain_grads.items():
        cosine = torch.nn.functional.cosine_similarity(grad.flatten(), fused_grads[name].flatten(), dim=0)
        assert cosine > 0.99, (name, float(cosine))
