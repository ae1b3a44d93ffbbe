"""The remote backend's prompt budget and generation threads (against a server:
tests/api/test_remote_generator.py)."""

import threading

from agents.nodes import GENERATION_EXECUTOR, generation_executor
from agents.openai_generator import OpenAIGenerator, fit_to_budget
from configs.settings import ModelSettings

SYSTEM = {"role": "system", "content": "s" * 100}


def turns(count: int, size: int) -> list[dict[str, str]]:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": f"{i}" * size} for i in range(count)]


def test_the_oldest_turns_go_first_and_the_system_prompt_stays():
    conversation = turns(5, 100)
    assert fit_to_budget([SYSTEM, *conversation], 350) == [SYSTEM, *conversation[-2:]]
    assert fit_to_budget([SYSTEM, *conversation], 600) == [SYSTEM, *conversation]


def test_the_latest_turn_stays_even_over_budget():
    conversation = turns(3, 500)
    assert fit_to_budget([SYSTEM, *conversation], 10) == [SYSTEM, conversation[-1]]
    assert fit_to_budget(conversation, 10) == [conversation[-1]]


class OneAtATime:
    concurrency = 1


def test_a_remote_server_gets_parallel_generations_and_a_sequential_engine_its_one_thread():
    with generation_executor(OneAtATime()) as local:
        assert local is GENERATION_EXECUTOR
    remote = ModelSettings(backend="openai", openai={"base_url": "http://127.0.0.1:9/v1", "model": "m",
                                                     "max_concurrent_requests": 3})
    all_running = threading.Barrier(3, timeout=5)  # passes only when three generations run at once
    with generation_executor(OpenAIGenerator.from_settings(remote)) as pool:
        futures = [pool.submit(all_running.wait) for _ in range(3)]
        assert sorted(future.result() for future in futures) == [0, 1, 2]  # BrokenBarrierError otherwise
