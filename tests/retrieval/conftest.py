"""Fixtures for retrieval tests: a temp embedded store, and a real Chroma server in a subprocess."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import tantivy

from configs.settings import AppSettings, load_settings
from retrieval import lexical

CHROMA_CLI = Path(sys.executable).with_name("chroma")


def write_lexical(index_file: Path, chunks: dict[str, str]) -> sqlite3.Connection:
    """The texts and the tantivy index as the ingest's manifest writes them: one commit, then the index follows."""
    connection = sqlite3.connect(index_file)
    with connection:
        lexical.create_schema(connection)
        added = lexical.add_chunks(connection, chunks.items())
        target = lexical.bump_generation(connection)
    lexical.Bm25Writer(lexical.bm25_dir(index_file)).apply(connection, added, [], target)
    return connection


def bm25_ids(index_file: Path) -> set[str]:
    """Every chunk id in the tantivy index beside the manifest file (none before its first commit)."""
    directory = lexical.bm25_dir(index_file)
    if not (directory / "generation").is_file():
        return set()
    index = tantivy.Index.open(str(directory))
    searcher = index.searcher()
    hits = searcher.search(tantivy.Query.all_query(), max(searcher.num_docs, 1)).hits
    return {searcher.doc(address)["id"][0] for _, address in hits}


@pytest.fixture
def store_settings(tmp_path: Path) -> AppSettings:
    return load_settings(
        overrides={"vector_store.persist_dir": tmp_path / "chroma", "vector_store.collection": "test_kb"}
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_heartbeat(url: str, server: subprocess.Popen, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"chroma run exited with status {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"chroma run did not answer at {url} within {timeout_s:.0f} s")


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real `chroma run` server on a free local port, stopped after the session."""
    if not CHROMA_CLI.is_file():
        pytest.skip(f"the chroma CLI is not installed beside {sys.executable}")
    data_dir = tmp_path_factory.mktemp("chroma-server")
    port = _free_port()
    log = (data_dir / "server.log").open("w")
    server = subprocess.Popen(
        [str(CHROMA_CLI), "run", "--path", str(data_dir / "db"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            _wait_for_heartbeat(url, server)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; server log: {(data_dir / 'server.log').read_text()[-2000:]}") from exc
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
