"""Which attention kernel the continuous-batching engine runs (model.engine.attention)."""

from __future__ import annotations

import pytest
import torch

from agents.continuous_generator import ContinuousGenerator, engine_attention
from configs.settings import EngineSettings, load_settings
from finetune.modeling import load_model


def test_a_named_kernel_is_used_as_named() -> None:
    assert engine_attention("sdpa", torch.device("cpu")) == "sdpa"
    assert engine_attention("flash_attention_4", torch.device("cuda")) == "flash_attention_4"


def test_auto_leaves_the_choice_to_transformers_off_the_gpu() -> None:
    assert engine_attention("auto", torch.device("cpu")) is None


def _flash_attention_4_usable() -> bool:
    from transformers.utils import is_flash_attn_4_available

    return torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 9 and is_flash_attn_4_available()


@pytest.mark.slow
@pytest.mark.gpu
@pytest.mark.skipif(not _flash_attention_4_usable(), reason="needs a Hopper or newer GPU and flash-attn-4")
def test_auto_serves_with_flash_attention_4_where_it_is_installed() -> None:
    settings = load_settings().model.model_copy(update={
        "max_new_tokens": 8, "repetition_penalty": 1.0, "device": "cuda",
        "engine": EngineSettings(kind="continuous", max_concurrent=2, kv_cache_memory_percent=0.05),
    })
    model, tokenizer = load_model(settings)
    generator = ContinuousGenerator(model, tokenizer, settings)
    try:
        answer = "".join(generator.stream([{"role": "user", "content": "What is the capital of France?"}]))
        assert model.config._attn_implementation == "flash_attention_4"
        assert "Paris" in answer
    finally:
        generator.close()
