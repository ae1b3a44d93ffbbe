"""The continuous-batching engine on the real embedded model (CPU here; CUDA in production).

In float32 the batched forward does the same arithmetic as plain `generate`, so greedy answers must match it
token for token, also when the streams run at once.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from agents.continuous_generator import ContinuousGenerator
from agents.generator import SequentialGenerator
from configs.settings import EngineSettings, load_settings
from finetune.modeling import load_model

pytestmark = pytest.mark.slow

QUESTIONS = ["What is the capital of France?", "How do I boil an egg?", "Name three primary colors."]


@pytest.fixture(scope="module")
def engines():
    # repetition_penalty 1.0: continuous batching has no repetition penalty, so both sides decode the same way.
    settings = load_settings().model.model_copy(update={
        "max_new_tokens": 12, "repetition_penalty": 1.0, "device": "cpu",
        "engine": EngineSettings(kind="continuous", max_concurrent=4),
    })
    model, tokenizer = load_model(settings)
    continuous = ContinuousGenerator(model, tokenizer, settings)
    yield SequentialGenerator(model, tokenizer, settings), continuous
    continuous.close()


def chat(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}]


def test_concurrent_greedy_streams_equal_plain_generate(engines):
    sequential, continuous = engines
    expected = [sequential.generate(chat(q)) for q in QUESTIONS]
    with ThreadPoolExecutor(len(QUESTIONS)) as pool:
        streamed = list(pool.map(lambda q: list(continuous.stream(chat(q))), QUESTIONS))

    assert ["".join(pieces) for pieces in streamed] == expected
    assert all(text.strip() for text in expected)
    assert all(len(pieces) > 1 for pieces in streamed)  # token by token, not in one block


def test_closing_a_stream_cancels_its_request(engines):
    _, continuous = engines
    before = continuous.stats.tokens
    short = continuous.settings
    continuous.settings = short.model_copy(update={"max_new_tokens": 400})  # read per request
    try:
        stream = continuous.stream(chat("Write a long story about a dragon."))
        next(stream), next(stream)
        stream.close()
    finally:
        continuous.settings = short

    deadline = time.monotonic() + 10
    while continuous.busy() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not continuous.busy(), "the cancelled request still holds a slot"
    assert continuous.stats.tokens - before < 100
    assert continuous.generate(chat(QUESTIONS[0]))  # the engine serves the next request


def test_close_stops_the_engine_threads():
    settings = load_settings().model.model_copy(update={
        "max_new_tokens": 4, "device": "cpu", "engine": EngineSettings(kind="continuous", max_concurrent=2),
    })
    model, tokenizer = load_model(settings)
    existing = set(threading.enumerate())
    engine = ContinuousGenerator(model, tokenizer, settings)
    assert engine.generate(chat("Hi"))
    started = set(threading.enumerate()) - existing
    assert any(not thread.daemon for thread in started)  # the manager's loop: it would keep the process alive
    engine.close()

    assert [thread for thread in started if thread.is_alive()] == []
