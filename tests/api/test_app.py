"""In-process app tests: readiness while loading or after a failed load, failures mapped to JSON."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import pytest
from fastapi.testclient import TestClient

from agents.chat import TokenEvent
from agents.generator import GenerationError
from api.app import create_app
from configs.settings import AppSettings
from retrieval.store import VectorStoreError


def test_readyz_is_503_while_loading_and_chat_says_to_wait():
    release = asyncio.Event()

    async def slow_starter(settings: AppSettings, stack: AsyncExitStack):
        await release.wait()  # never set: the agent stays "loading"

    with TestClient(create_app(AppSettings(), starter=slow_starter)) as client:
        assert client.get("/healthz").json() == {"status": "ok", "detail": None}
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "loading"
        chat = client.post("/v1/chat", json={"message": "hello"})
        assert chat.status_code == 503
        assert chat.json()["code"] == "not_ready" and "/readyz" in chat.json()["detail"]


def test_readyz_reports_a_failed_load_without_a_traceback():
    async def failing_starter(settings: AppSettings, stack: AsyncExitStack):
        raise FileNotFoundError("adapter folder /nope not found")

    with TestClient(create_app(AppSettings(), starter=failing_starter)) as client:
        for _ in range(50):  # the load runs as a background task
            ready = client.get("/readyz")
            if ready.json()["status"] != "loading":
                break
        assert ready.status_code == 503
        failure = "FileNotFoundError: adapter folder /nope not found"
        assert ready.json() == {"status": "failed", "detail": failure}
        stream = client.post("/v1/chat/stream", json={"message": "hello"})
        assert stream.status_code == 503 and "adapter folder" in stream.json()["detail"]
        assert "Traceback" not in stream.text


class BrokenAgent:
    """Streams one token, then fails the way a model or the store can fail mid-turn."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def ask(self, message: str, thread_id: str):
        raise self.error

    async def stream(self, message: str, thread_id: str):
        yield TokenEvent("Hello")
        raise self.error


def client_for(agent) -> TestClient:
    async def starter(settings: AppSettings, stack: AsyncExitStack):
        return agent

    return TestClient(create_app(AppSettings(), starter=starter))  # re-raises anything left unmapped


def wait_ready(client: TestClient) -> None:
    for _ in range(50):
        if client.get("/readyz").status_code == 200:
            return
    raise AssertionError("never ready")


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (GenerationError("CUDA out of memory at /secret/path"), 500, "generation_failed"),
        (VectorStoreError("chroma at /var/chroma is locked"), 503, "knowledge_base_unavailable"),
        (KeyError("surprise"), 500, "internal_error"),
    ],
)
def test_failures_become_json_errors_without_internals(error, status, code):
    with client_for(BrokenAgent(error)) as client:
        wait_ready(client)
        response = client.post("/v1/chat", json={"message": "hello"})
    assert response.status_code == status and response.json()["code"] == code
    assert "/secret" not in response.text and "/var" not in response.text and "Traceback" not in response.text


def test_a_failure_after_the_stream_started_ends_it_with_an_error_event():
    with client_for(BrokenAgent(GenerationError("boom"))) as client:
        wait_ready(client)
        body = client.post("/v1/chat/stream", json={"message": "hello"}).text
    assert body.index("event: token") < body.index("event: error")
    assert '"code":"generation_failed"' in body.replace(" ", "") and "boom" not in body
