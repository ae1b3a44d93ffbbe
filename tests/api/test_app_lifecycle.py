"""Readiness while the agent loads or after it failed to, in-process (the real server is in test_server.py)."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from fastapi.testclient import TestClient

from api.app import create_app
from configs.settings import AppSettings


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
        assert ready.json() == {"status": "failed", "detail": "FileNotFoundError: adapter folder /nope not found"}
        stream = client.post("/v1/chat/stream", json={"message": "hello"})
        assert stream.status_code == 503 and "adapter folder" in stream.json()["detail"]
        assert "Traceback" not in stream.text
