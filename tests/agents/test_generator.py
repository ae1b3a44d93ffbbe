"""The sequential generator on the real embedded model: prompt truncation, greedy decoding, streaming."""

from __future__ import annotations

import threading

import pytest

from agents.generator import SequentialGenerator
from agents.parts import load_generator
from configs.settings import load_settings

pytestmark = pytest.mark.slow

SYSTEM = {"role": "system", "content": "SYSTEM-RULES: answer briefly and safely."}


@pytest.fixture(scope="module")
def loaded():
    generator = load_generator(load_settings().model)
    return generator.model, generator.tokenizer, generator.settings


def make(loaded, **settings) -> SequentialGenerator:
    model, tokenizer, base = loaded
    return SequentialGenerator(model, tokenizer, base.model_copy(update=settings))


def test_long_conversations_drop_the_oldest_turns_and_keep_the_system_prompt(loaded):
    generator = make(loaded, max_input_tokens=120)
    turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " + "word " * 20}
             for i in range(9)]
    ids = generator.encode([SYSTEM, *turns])
    text = generator.tokenizer.decode(ids)

    assert len(ids) <= 120
    assert "SYSTEM-RULES" in text and "turn 8" in text and "turn 0" not in text
    assert text.endswith("<|im_start|>assistant\n")


def test_one_overlong_turn_keeps_the_system_prompt_and_the_end_of_the_turn(loaded):
    generator = make(loaded, max_input_tokens=80)
    question = "filler " * 300 + "FINAL-QUESTION?"
    ids = generator.encode([SYSTEM, {"role": "user", "content": question}])
    text = generator.tokenizer.decode(ids)

    assert len(ids) == 80
    assert text.startswith("<|im_start|>system\nSYSTEM-RULES") and "FINAL-QUESTION?" in text


def test_greedy_generation_is_deterministic_bounded_and_streams_the_same_text(loaded):
    generator = make(loaded, max_new_tokens=12, temperature=0.0)
    messages = [SYSTEM, {"role": "user", "content": "What is the capital of France?"}]
    first, second = generator.generate(messages), generator.generate(messages)
    pieces = list(generator.stream(messages))

    assert first == second == "".join(pieces) and first.strip()
    assert len(pieces) > 1  # streamed piece by piece, not in one block
    assert len(generator.tokenizer(first, add_special_tokens=False)["input_ids"]) <= 12


def test_closing_a_stream_early_stops_generation_and_frees_the_model(loaded):
    generator = make(loaded, max_new_tokens=200)
    stream = generator.stream([SYSTEM, {"role": "user", "content": "Write a long story about a dragon."}])
    next(stream), next(stream)
    stream.close()  # returns once the generation thread has ended
    free: list[bool] = []

    def try_lock() -> None:  # from another thread: the lock is reentrant for the consuming one
        free.append(generator._lock.acquire(blocking=False))
        if free[-1]:
            generator._lock.release()

    worker = threading.Thread(target=try_lock)
    worker.start()
    worker.join()
    assert free == [True]
    assert not any(thread.name == "generator" for thread in threading.enumerate())
