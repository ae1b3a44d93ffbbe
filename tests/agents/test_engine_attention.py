"""Which attention kernel the continuous-batching engine runs (model.engine.attention)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from agents.continuous_generator import ContinuousGenerator, engine_attention
from configs.settings import EMBEDDED_ADAPTER, EngineSettings, ModelSettings
from finetune.modeling import load_tokenizer


def test_a_named_kernel_is_used_as_named() -> None:
    assert engine_attention("sdpa", torch.device("cpu")) == "sdpa"
    assert engine_attention("flash_attention_4", torch.device("cuda")) == "flash_attention_4"


def test_auto_leaves_the_choice_to_transformers_off_the_gpu() -> None:
    assert engine_attention("auto", torch.device("cpu")) is None


def _serves_flash_attention_4() -> bool:
    # The service's own choice decides: the test runs exactly where `auto` picks FlashAttention 4.
    return torch.cuda.is_available() and engine_attention("auto", torch.device("cuda")) == "flash_attention_4"


@pytest.mark.slow
@pytest.mark.gpu
@pytest.mark.skipif(not _serves_flash_attention_4(), reason="needs a Hopper or newer GPU and flash-attn-4")
def test_auto_serves_with_flash_attention_4_where_it_is_installed() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    # A small random Llama on the GPU (the engine's code path does not depend on the weights), served through
    # the service's continuous generator with the shipped adapter's tokenizer.
    tokenizer = load_tokenizer(ModelSettings(name_or_path=str(EMBEDDED_ADAPTER)))
    config = LlamaConfig(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=len(tokenizer), attn_implementation="sdpa")
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).to(torch.bfloat16).eval()
    settings = ModelSettings(max_new_tokens=8, repetition_penalty=1.0, device="cuda", engine=EngineSettings(
        kind="continuous", max_concurrent=4, kv_cache_memory_percent=0.02))
    generator = ContinuousGenerator(model, tokenizer, settings)
    try:
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda q: "".join(generator.stream([{"role": "user", "content": q}])),
                                    ["What is the capital of France?", "Name a colour.", "Count to three.", "Hi"]))
        assert model.config._attn_implementation == "flash_attention_4"
        assert generator.stats.tokens == 4 * settings.max_new_tokens and all(answers)
    finally:
        generator.close()
