"""The OpenAI-compatible generator backend (`model.backend: openai`) against a real OpenAI-compatible server:
this project's own service (tests/api/conftest.py), then a second service that generates through it."""

from __future__ import annotations

import time

import pytest
from openai import OpenAI

from agents.generation import GenerationError, GeneratorUnavailable
from agents.parts import load_generator
from configs.settings import ModelSettings
from tests.api.conftest import free_port, running_server
from tests.api.test_server import BENIGN

pytestmark = pytest.mark.slow

# Logged when the caller leaves: by the generate node if the model was mid-answer, else by the agent for the turn.
CANCELLED = "turn cancelled by the caller"
TURN_DONE = '"message": "turn done"'


def remote_settings(base_url: str, api_key: str | None, read_timeout_s: float = 120) -> ModelSettings:
    return ModelSettings(backend="openai", openai={"base_url": f"{base_url}/v1", "model": "aligned-rag",
                                                   "api_key": api_key, "read_timeout_s": read_timeout_s})


def downstream_settings(upstream_url: str, api_key: str) -> dict:
    """A service that generates through `upstream_url`. Linear workflow: every answer calls the generator;
    no starter knowledge base: fast to start, and the generator sees the question alone."""
    return {
        "model": {"backend": "openai",
                  "openai": {"base_url": f"{upstream_url}/v1", "model": "aligned-rag", "api_key": api_key,
                             "read_timeout_s": 180}},
        "agent": {"workflow": "linear"},
        "ingest": {"ingest_starter_on_startup": False},
        "api": {"dev_mode": True},
    }


def test_the_backend_returns_the_servers_answer_and_counts_its_tokens(server):
    generator = load_generator(remote_settings(server.base_url, server.api_key))
    answer = generator.generate([{"role": "user", "content": BENIGN}])

    assert answer.strip()
    # The service reports no usage: each content chunk of the stream counts as one token.
    assert generator.stats.tokens > 1 and generator.stats.busy_seconds > 0


def test_closing_the_stream_closes_the_request_and_the_server_stops_generating(server):
    generator = load_generator(remote_settings(server.base_url, server.api_key))
    log = server.log_path.read_text()
    cancelled_before, done_before = log.count(CANCELLED), log.count(TURN_DONE)
    stream = generator.stream([{"role": "user", "content": BENIGN}])
    assert next(stream).strip()
    started = time.monotonic()
    stream.close()

    assert time.monotonic() - started < 2  # closing does not wait for the rest of the answer
    deadline = time.monotonic() + 30
    while server.log_path.read_text().count(CANCELLED) == cancelled_before:
        assert time.monotonic() < deadline, "the server kept generating for a client that had left"
        time.sleep(0.2)
    time.sleep(1)
    assert server.log_path.read_text().count(TURN_DONE) == done_before  # no grounding check or retry ran on


def test_server_failures_become_generation_errors_that_say_what_failed(server):
    down = load_generator(remote_settings(f"http://127.0.0.1:{free_port()}", server.api_key))
    with pytest.raises(GeneratorUnavailable, match="is unreachable"):
        down.generate([{"role": "user", "content": BENIGN}])
    wrong_key = load_generator(remote_settings(server.base_url, "not-a-key"))
    with pytest.raises(GenerationError, match="answered 401") as refused:
        wrong_key.generate([{"role": "user", "content": BENIGN}])
    assert not isinstance(refused.value, GeneratorUnavailable)  # a configuration error: retrying won't help
    # The service sends its first chunk at once, then nothing until the guard and the model have run.
    impatient = load_generator(remote_settings(server.base_url, server.api_key, read_timeout_s=0.5))
    with pytest.raises(GeneratorUnavailable, match="did not answer within 0.5 s"):
        impatient.generate([{"role": "user", "content": BENIGN}])


def test_a_service_generating_through_another_streams_without_loading_a_model(server, tmp_path):
    with running_server(tmp_path, downstream_settings(server.base_url, server.api_key)) as downstream:
        client = OpenAI(base_url=f"{downstream.base_url}/v1", api_key="unused-in-dev-mode", max_retries=0, timeout=300)
        chunks = list(client.chat.completions.create(
            model="aligned-rag", messages=[{"role": "user", "content": BENIGN}], stream=True,
        ))
    log = downstream.log_path.read_text()
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    rag = chunks[-1].model_extra["x_rag"]
    assert len(chunks) >= 3 and text.strip() and chunks[-1].choices[0].finish_reason == "stop"
    assert rag["route"] == ["safety_in", "retrieve", "generate", "safety_out"]
    assert "OpenAI-compatible server" in log
    assert not [line for line in log.splitlines() if "agents.generator" in line and "loaded in" in line]
