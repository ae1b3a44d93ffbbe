"""Real `python -m api` servers (uvicorn, embedded models, temp Chroma + SQLite): one for the whole session,
and `running_server` for a test module that needs a profile of its own."""

from __future__ import annotations

import copy
import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
API_KEY = "test-key-3f9a1c"
OTHER_KEY = "other-key-77b2e0"
# Above the linear workflow's system prompt: tests/api/test_remote_generator.py sends one through this server.
MAX_MESSAGE_CHARS = 2000
READY_TIMEOUT_S = 240


@dataclass(frozen=True)
class Server:
    base_url: str
    log_path: Path
    pid: int
    api_key: str = API_KEY
    other_key: str = OTHER_KEY
    max_message_chars: int = MAX_MESSAGE_CHARS

    def client(self, **kwargs) -> httpx.Client:
        headers = {"Authorization": f"Bearer {API_KEY}"} | kwargs.pop("headers", {})
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=120, **kwargs)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_ready(process: subprocess.Popen, base_url: str, log_path: Path) -> float:
    started = time.monotonic()
    while time.monotonic() - started < READY_TIMEOUT_S:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            ready = httpx.get(f"{base_url}/readyz", timeout=2)
        except httpx.TransportError:
            ready = None
        if ready is not None and ready.status_code == 200:
            return time.monotonic() - started
        if ready is not None and ready.json()["status"] == "failed":
            pytest.fail(f"the server failed to load its models: {ready.json()['detail']}")
        time.sleep(0.25)
    pytest.fail(f"/readyz not 200 after {READY_TIMEOUT_S} s:\n{log_path.read_text()[-3000:]}")


@contextmanager
def running_server(root: Path, profile: dict[str, Any]) -> Iterator[Server]:
    """`python -m api --config <profile>` on a free port, with its Chroma store and SQLite memory under `root`;
    yielded once /readyz answers 200, then stopped with SIGTERM, which must end it with status 0."""
    profile = copy.deepcopy(profile)
    profile.setdefault("vector_store", {})["persist_dir"] = str(root / "chroma")
    profile.setdefault("agent", {})["sqlite_path"] = str(root / "checkpoints.sqlite")
    config = root / "service.yaml"
    config.write_text(yaml.safe_dump(profile))
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = root / "server.log"
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "api", "--port", str(port), "--config", str(config)],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        wait_until_ready(process, base_url, log_path)
        yield Server(base_url, log_path, process.pid)
    finally:
        process.terminate()
        try:
            returncode = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            pytest.fail("the server did not stop within 30 s of SIGTERM")
    # Idle at the end: SIGTERM is a requested stop, not a failure.
    assert returncode == 0, log_path.read_text()[-2000:]


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Iterator[Server]:
    profile = {
        "model": {"max_new_tokens": 48},
        # Knowledge answers generated (not the embedded default's quoted evidence, answer_with auto): the
        # streaming, cancellation and remote-backend tests need a model that is still writing when they act.
        "agent": {"agentic": {"answer_with": "generator"}},
        # The second key is stored hashed, as a deployment would; generous rate limit: the suite is one client.
        "api": {"api_keys": [API_KEY, f"sha256:{hashlib.sha256(OTHER_KEY.encode()).hexdigest()}"],
                "max_message_chars": MAX_MESSAGE_CHARS, "rate_limit_per_minute": 10_000,
                "max_body_bytes": 65_536},
    }
    with running_server(tmp_path_factory.mktemp("api-server"), profile) as running:
        yield running
