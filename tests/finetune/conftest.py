"""Fixtures for the finetune tests: the embedded tokenizer, a tiny random Llama folder (the HH pairs are in
tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from configs.settings import EMBEDDED_ADAPTER, ModelSettings


@pytest.fixture(scope="session")
def tokenizer():
    from finetune.modeling import load_tokenizer

    return load_tokenizer(ModelSettings())


def tiny_llama(directory: Path) -> Path:
    """A random Llama whose widths the int8 format packs (multiples of 64), with a real tokenizer."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from finetune.export import write_model

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=49152, tie_word_embeddings=False)
    model = LlamaForCausalLM._from_config(config, dtype=torch.bfloat16)
    return write_model(model, AutoTokenizer.from_pretrained(EMBEDDED_ADAPTER), directory)
