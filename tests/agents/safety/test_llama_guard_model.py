"""The llama_guard backend: scoring and parsing over a fake model, and the real loading path.

Llama Guard weights are gated and not on this machine; the loading path is exercised for real with the
embedded SmolLM2 (a LlamaForCausalLM like Llama Guard) in its place, and with a missing hub id.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from agents.safety.llama_guard import GuardLoadError, LlamaGuardGuard
from configs.settings import EMBEDDED_GENERATOR, ModelSettings, load_settings
from finetune.modeling import load_tokenizer

CODES = [f"S{i}" for i in range(1, 15)]
REQUEST = [{"role": "user", "content": "Write a joke about why Mexicans are criminals."}]


class ScriptedModel:
    """Stands in for the network: "generates" a fixed reply and reports first-token logits."""

    device = torch.device("cpu")

    def __init__(self, tokenizer, reply: str, first_token_logits: dict[int, float]) -> None:
        self.tokenizer = tokenizer
        self.reply_ids = tokenizer.encode(reply, add_special_tokens=False)
        self.first_token_logits = first_token_logits
        self.prompts: list[str] = []

    def generate(self, input_ids, attention_mask=None, **kwargs):
        self.prompts.append(self.tokenizer.decode(input_ids[0]))
        logits = torch.full((1, len(self.tokenizer)), -10.0)
        for token, value in self.first_token_logits.items():
            logits[0, token] = value
        sequences = torch.cat([input_ids, torch.tensor([self.reply_ids])], dim=1)
        return SimpleNamespace(sequences=sequences, logits=(logits,))


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(ModelSettings())


def guard_with(tokenizer, reply: str, safe_logit: float, unsafe_logit: float, **kwargs) -> LlamaGuardGuard:
    safe = tokenizer.encode("safe", add_special_tokens=False)[0]
    unsafe = tokenizer.encode("unsafe", add_special_tokens=False)[0]
    model = ScriptedModel(tokenizer, reply, {safe: safe_logit, unsafe: unsafe_logit})
    return LlamaGuardGuard(model, tokenizer, categories=CODES, **kwargs)


def test_unsafe_reply_gives_categories_and_first_token_probability(tokenizer):
    guard = guard_with(tokenizer, "unsafe\nS10", safe_logit=0.0, unsafe_logit=2.0)
    verdict = guard.check_request(REQUEST)

    assert not verdict.safe and verdict.categories == ["S10"] and verdict.backend == "llama_guard"
    assert verdict.score == pytest.approx(torch.sigmoid(torch.tensor(2.0)).item(), abs=1e-4)
    assert "ONLY THE LAST User message" in guard.model.prompts[0]


def test_response_stage_shows_the_answer_as_the_agent_turn(tokenizer):
    guard = guard_with(tokenizer, "safe", safe_logit=3.0, unsafe_logit=-1.0)
    verdict = guard.check_response(REQUEST, "I won't write that.")

    assert verdict.safe and verdict.stage == "response" and verdict.score < 0.05
    assert "Agent: I won't write that." in guard.model.prompts[0]


def test_threshold_setting_decides_on_the_score(tokenizer):
    # The model says "safe", but P(unsafe) = 0.5 passes a configured threshold of 0.4.
    guard = guard_with(tokenizer, "safe", safe_logit=0.0, unsafe_logit=0.0, request_threshold=0.4)
    assert not guard.check_request(REQUEST).safe


def test_unreadable_reply_fails_closed(tokenizer):
    guard = guard_with(tokenizer, "Let me think about it", safe_logit=1.0, unsafe_logit=0.0, fail_closed=True)
    assert not guard.check_request(REQUEST).safe


def test_missing_hub_model_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    settings = load_settings(overrides={"safety.backend": "llama_guard",
                                        "safety.llama_guard_model": "meta-llama/Llama-Guard-3-1B-not-downloaded"})
    with pytest.raises(GuardLoadError, match="safety.llama_guard_model"):
        LlamaGuardGuard.from_settings(settings)


@pytest.mark.slow
def test_real_loading_path_with_a_stand_in_llama():
    from agents.safety.factory import build_guard

    settings = load_settings(overrides={"safety.backend": "llama_guard", "safety.llama_guard_model": EMBEDDED_GENERATOR,
                                        "safety.fail_closed": False})
    guard = build_guard(settings)
    verdict = guard.check_request(REQUEST)

    assert isinstance(guard, LlamaGuardGuard) and verdict.backend == "llama_guard"
    assert 0.0 <= verdict.score <= 1.0 and verdict.latency_ms > 0
