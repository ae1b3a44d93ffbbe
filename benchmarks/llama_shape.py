"""A Llama-3.1-8B-shaped model with random weights, saved once and loaded in 4-bit like a user's model.

Speed does not depend on the weights' values, so the benchmark needs no hub access. `tiny` is the same
architecture at toy size, for the CPU smoke test.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from finetune.export import write_model

logger = logging.getLogger(__name__)

SHAPES: dict[str, dict] = {
    # meta-llama/Llama-3.1-8B-Instruct config.json
    "llama31-8b": {
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 128256,
        "max_position_embeddings": 131072,
        "rope_theta": 500000.0,
        "rope_scaling": {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": False,
        "bos_token_id": 128000,
        "eos_token_id": 128009,
    },
    "tiny": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 49152,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": False,
    },
}


def save_random_model(shape: str, directory: Path, device: str, tokenizer: Any) -> Path:
    """Write a bf16 checkpoint of random weights and `tokenizer` (skipped when it is already there)."""
    if (directory / "config.json").is_file():
        return directory
    config = LlamaConfig(**SHAPES[shape])
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM._from_config(config, dtype=torch.bfloat16)
    with torch.no_grad():
        # Ids past the tokenizer's vocabulary score 0, below the best in-vocabulary logit: every generated id
        # decodes (a server's detokenizer rejects unknown ids). Speed does not depend on the values.
        model.lm_head.weight[len(tokenizer):] = 0
    write_model(model, tokenizer, directory)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return directory


def save_random_adapter(model_dir: Path, directory: Path, device: str) -> Path:
    """A LoRA adapter of the project's default shape with random (non-zero) weights, so that merging it or
    keeping it separate changes the outputs as a trained one would (skipped when it is already there)."""
    if (directory / "adapter_config.json").is_file():
        return directory
    from peft import get_peft_model

    from configs.settings import LoraSettings
    from finetune.modeling import build_lora_config

    torch.manual_seed(1)
    with torch.device(device):
        model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, device_map={"": device})
    peft_model = get_peft_model(model, build_lora_config(LoraSettings()))
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:  # peft starts B at zero: the adapter would be a no-op
                parameter.normal_(std=0.02)
    partial = directory.with_name(directory.name + ".partial")
    peft_model.save_pretrained(partial)
    partial.rename(directory)
    del model, peft_model
    if device == "cuda":
        torch.cuda.empty_cache()
    return directory


def save_merged_model(model_dir: Path, adapter_dir: Path, directory: Path, device: str) -> Path:
    """The adapter merged into a bf16 copy of the base, with its tokenizer: what an external server (vLLM) loads
    to serve the adapter merged, as the service's own engine does in memory (skipped when it is already there)."""
    if (directory / "config.json").is_file():
        return directory
    from transformers import AutoTokenizer

    from finetune.modeling import attach_adapter

    with torch.device(device):
        model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, device_map={"": device})
    merged = attach_adapter(model, adapter_dir)  # merged into the bf16 weights, as the service serves it
    write_model(merged, AutoTokenizer.from_pretrained(model_dir), directory)
    del model, merged
    if device == "cuda":
        torch.cuda.empty_cache()
    return directory
