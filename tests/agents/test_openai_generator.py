"""The remote backend's prompt budget, generation threads and event-stream parsing (against a server:
tests/api/test_remote_generator.py)."""

import threading

import pytest

from agents.nodes import GENERATION_EXECUTOR, generation_executor
from agents.openai_generator import OpenAIGenerator, StreamError, chunk_events, fit_to_budget
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


def test_the_event_stream_yields_its_json_chunks_up_to_done():
    lines = [": keep-alive", "", 'data: {"choices": [{"delta": {"content": "Hi"}}]}', "event: ignored",
             'data: {"choices": [], "usage": {"completion_tokens": 1}}', "data: [DONE]", 'data: {"late": 1}']

    assert list(chunk_events(lines)) == [{"choices": [{"delta": {"content": "Hi"}}]},
                                         {"choices": [], "usage": {"completion_tokens": 1}}]


@pytest.mark.parametrize("line, reason", [
    ('data: {"error": {"message": "engine died", "code": 500}}', "engine died"),
    ('data: {"error": "overloaded"}', "overloaded"),
    ("data: {not json", "not JSON"),
    ("data: [1, 2]", "not a JSON object"),
])
def test_an_error_event_or_a_broken_chunk_ends_the_stream_with_its_reason(line, reason):
    events = chunk_events(['data: {"choices": []}', line, 'data: {"choices": []}'])
    assert next(events) == {"choices": []}
    with pytest.raises(StreamError, match=reason):
        next(events)
