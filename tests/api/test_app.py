"""In-process app tests: readiness while loading or after a failed load, failures mapped to JSON, and the
guards in front of the agent (keys, body limits, content type, rate limit, turn queue)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from agents.chat import TokenEvent
from agents.generation import GenerationError, GenerationStats, GeneratorUnavailable
from api.app import create_app
from configs.settings import AppSettings, ConfigError
from retrieval.store import VectorStoreError

DEV = AppSettings(api={"dev_mode": True})
LOCAL_CLIENT = ("127.0.0.1", 50000)


def local_client(app) -> TestClient:
    return TestClient(app, client=LOCAL_CLIENT)


def test_readyz_is_503_while_loading_and_chat_says_to_wait():
    release = asyncio.Event()

    async def slow_starter(settings: AppSettings, stack: AsyncExitStack):
        await release.wait()  # never set: the agent stays "loading"

    with local_client(create_app(DEV, starter=slow_starter)) as client:
        assert client.get("/healthz").json() == {"status": "ok", "detail": None}
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "loading"
        chat = client.post("/v1/chat", json={"message": "hello"})
        assert chat.status_code == 503
        assert chat.json()["code"] == "not_ready" and "/readyz" in chat.json()["detail"]


def test_readyz_reports_a_failed_load_without_a_traceback():
    async def failing_starter(settings: AppSettings, stack: AsyncExitStack):
        raise FileNotFoundError("adapter folder /nope not found")

    with local_client(create_app(DEV, starter=failing_starter)) as client:
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

    generation_stats = GenerationStats()

    async def check_owner(self, thread_id: str, owner: str) -> None:
        pass

    async def stream(self, message: str, thread_id: str, owner: str, history=()):
        yield TokenEvent("Hello")
        raise self.error


def client_for(agent, settings: AppSettings = DEV) -> TestClient:
    async def starter(settings: AppSettings, stack: AsyncExitStack):
        return agent

    return local_client(create_app(settings, starter=starter))  # re-raises anything left unmapped


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
        (GeneratorUnavailable("http://10.0.0.5:8000/secret refused"), 503, "generator_unavailable"),
        (KeyError("surprise"), 500, "internal_error"),
    ],
)
def test_failures_become_json_errors_without_internals(error, status, code):
    with client_for(BrokenAgent(error)) as client:
        wait_ready(client)
        response = client.post("/v1/chat", json={"message": "hello"})
    assert response.status_code == status and response.json()["code"] == code
    assert ("retry-after" in response.headers) == (status == 503)
    assert "/secret" not in response.text and "/var" not in response.text and "Traceback" not in response.text


def test_a_failure_after_the_stream_started_ends_it_with_an_error_event():
    with client_for(BrokenAgent(GenerationError("boom"))) as client:
        wait_ready(client)
        body = client.post("/v1/chat/stream", json={"message": "hello"}).text
    assert body.index("event: token") < body.index("event: error")
    assert '"code":"generation_failed"' in body.replace(" ", "") and "boom" not in body


def test_without_keys_the_service_only_starts_in_development_mode():
    with pytest.raises(ConfigError, match="no API keys configured"):
        create_app(AppSettings())


def test_development_mode_serves_only_this_machine():
    with client_for(BrokenAgent(KeyError("x"))) as local:
        assert local.get("/v1/models").status_code == 200
    with TestClient(create_app(DEV, starter=lambda s, stack: asyncio.sleep(0))) as remote:
        response = remote.get("/v1/models")
    assert response.status_code == 403 and response.json()["code"] == "forbidden"


@pytest.mark.parametrize(
    ("content", "headers", "status", "code"),
    [
        (b"x" * 2048, {"content-type": "application/json"}, 413, "body_too_large"),
        (b'{"message": "hi"}', {"content-type": "text/plain"}, 415, "unsupported_media_type"),
        (b'{"message": "hi"}', {}, 415, "unsupported_media_type"),
    ],
)
def test_bodies_are_checked_before_parsing(content, headers, status, code):
    settings = AppSettings(api={"dev_mode": True, "max_body_bytes": 1024})
    with client_for(BrokenAgent(KeyError("x")), settings) as client:
        wait_ready(client)
        response = client.post("/v1/chat", content=content, headers=headers)
    assert response.status_code == status and response.json()["code"] == code


def test_a_chunked_body_over_the_limit_gets_413():
    # How much of it is read is checked over a real socket (test_server.py); TestClient buffers bodies.
    settings = AppSettings(api={"dev_mode": True, "max_body_bytes": 1024})
    chunks = (b"x" * 512 for _ in range(8))
    with client_for(BrokenAgent(KeyError("x")), settings) as client:
        response = client.post("/v1/chat", content=chunks, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "at most 1024" in response.json()["detail"]


def test_a_wrong_method_gets_405_with_allow():
    with client_for(BrokenAgent(KeyError("x"))) as client:
        response = client.get("/v1/chat")
    assert response.status_code == 405 and response.headers["allow"] == "POST"


def test_keys_rate_limit_with_retry_after():
    settings = AppSettings(api={"api_keys": ["k-one-1234", "k-two-5678"], "rate_limit_per_minute": 2})
    with client_for(BrokenAgent(KeyError("x")), settings) as client:
        wait_ready(client)
        one, two = ({"Authorization": f"Bearer {key}"} for key in ("k-one-1234", "k-two-5678"))
        assert client.get("/v1/models").status_code == 401
        statuses = [client.post("/v1/chat", json={"message": "hi"}, headers=one).status_code for _ in range(3)]
        limited = client.post("/v1/chat", json={"message": "hi"}, headers=one)
        other = client.post("/v1/chat", json={"message": "hi"}, headers=two)
    assert statuses == [500, 500, 429]  # BrokenAgent fails the admitted ones
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert other.status_code == 500  # the other key has its own bucket


class BlockingAgent(BrokenAgent):
    """Streams one token, then holds its turn until released (from any thread)."""

    def __init__(self) -> None:
        super().__init__(KeyError("unused"))
        self.release = threading.Event()

    async def stream(self, message: str, thread_id: str, owner: str, history=()):
        yield TokenEvent("Hello")
        await asyncio.to_thread(self.release.wait, 30)
        raise self.error


@contextmanager
def uvicorn_in_thread(app) -> Iterator[str]:
    """A real uvicorn on 127.0.0.1 in this process (TestClient runs a stream to its end before returning)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_past_the_turn_queue_requests_get_503_with_retry_after():
    settings = AppSettings(api={"dev_mode": True, "max_queued_turns": 1, "generation_timeout_s": 20})
    agent = BlockingAgent()

    async def starter(settings: AppSettings, stack: AsyncExitStack):
        return agent

    with uvicorn_in_thread(create_app(settings, starter=starter)) as url, httpx.Client(base_url=url) as client:
        while client.get("/readyz").status_code != 200:
            time.sleep(0.05)
        with client.stream("POST", "/v1/chat/stream", json={"message": "hi"}) as held:
            assert held.status_code == 200
            lines = held.iter_lines()  # keep a reference: a collected iterator closes the response
            next(lines)  # the first turn is running
            rejected = client.post("/v1/chat", json={"message": "hi"})
            metrics = client.get("/metrics").text
            agent.release.set()
        # The slot is freed once the server has sent the stream's end, which the client may see first.
        deadline = time.monotonic() + 5
        while "rag_turn_queue_depth 0.0" not in (after := client.get("/metrics").text) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert rejected.status_code == 503 and rejected.json()["code"] == "overloaded"
    assert rejected.headers["retry-after"] == "2"
    assert "rag_turn_queue_depth 1.0" in metrics and 'rag_turns_rejected_total{reason="queue_full"} 1.0' in metrics
    assert "rag_turn_queue_depth 0.0" in after


def test_docs_are_served_from_local_assets():
    with client_for(BrokenAgent(KeyError("x"))) as client:
        page = client.get("/docs").text
        assert "cdn" not in page.lower() and "/static/swagger/swagger-ui-bundle.js" in page
        assert client.get("/static/swagger/swagger-ui-bundle.js").status_code == 200
        assert client.get("/redoc").status_code == 404


def test_the_chat_page_is_served_with_its_assets_and_a_strict_policy():
    with client_for(BrokenAgent(KeyError("x")), AppSettings(api={"api_keys": ["k"]})) as client:
        page = client.get("/")  # the page itself needs no key: it asks for one
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert '"S9": "indiscriminate weapons"' in page.text and "{{" not in page.text
        assert "/static/chat/chat.js" in page.text and "/static/chat/chat.css" in page.text
        for asset in ("chat.js", "render.js", "sse.js", "chat.css"):  # chat.js imports the other two
            response = client.get(f"/static/chat/{asset}")
            kind = "text/css" if asset.endswith(".css") else "javascript"
            assert response.status_code == 200 and kind in response.headers["content-type"], asset
        assert "/" not in client.get("/openapi.json").json()["paths"]
