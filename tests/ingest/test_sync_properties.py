"""Property test of sync semantics: random add/change/delete/move/kill sequences against a real Chroma on
disk, checking after every step that the store holds exactly the chunks of the files (and nothing else).

In the style of Chroma's own property tests (Hypothesis RuleBasedStateMachine). A deterministic hash
embedder stands in for MiniLM so a hundred ingests fit in seconds; everything else is the real stack.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest.mock import patch

import chromadb
import pytest
from chromadb.config import Settings as ChromaSettings
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from langchain_chroma import Chroma
from langchain_core.embeddings import Embeddings

from configs.settings import load_settings
from ingest import pipeline
from ingest.chunking import chunk_document
from ingest.loaders import load_document
from ingest.manifest import Manifest
from ingest.pipeline import ingest_paths
from retrieval.lexical import Bm25Writer
from retrieval.store import index_path
from tests.retrieval.conftest import bm25_ids

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]
NAMES = ["a.md", "b.txt", "c.md", "sub/d.txt", "sub/e.md", "sub/deep/f.txt"]
# Where a run can die: between any two of its writes, at the first, second or third call.
KILL_POINTS: list[tuple[object, str]] = [
    (pipeline, "write_embedded"),
    (pipeline, "delete_ids"),
    (Manifest, "mark_pending"),
    (Manifest, "commit"),
    (Manifest, "clear_pending"),
    (Bm25Writer, "apply"),  # after the SQLite commit, before tantivy follows it
]


class HashEmbeddings(Embeddings):
    """Deterministic 16-dimension unit vectors from a text's hash (unit tests only)."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        vectors = []
        for text in texts:
            raw = [byte - 127.5 for byte in hashlib.sha256(text.encode()).digest()[:16]]
            norm = sum(value * value for value in raw) ** 0.5
            vectors.append([value / norm for value in raw])
        return vectors

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


class Killed(Exception):
    pass


def _dies_at(point: tuple[object, str], call: int) -> Any:
    """Patch one write step so that its `call`-th call raises before doing anything."""
    holder, name = point
    original: Callable[..., Any] = getattr(holder, name)
    calls = {"n": 0}

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == call:
            raise Killed(name)
        return original(*args, **kwargs)

    return patch.object(holder, name, wrapper)


paragraph = st.lists(st.sampled_from(WORDS), min_size=3, max_size=40).map(" ".join)
content = st.lists(paragraph, min_size=1, max_size=4).map("\n\n".join)


class SyncMachine(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="sync-prop-"))
        self.parents = [self.workdir / "here", self.workdir / "there"]
        self.root = self.parents[0] / "docs"
        self.root.mkdir(parents=True)
        self.parents[1].mkdir()
        self.settings = load_settings(overrides={
            "vector_store.persist_dir": self.workdir / "chroma", "vector_store.collection": "prop_kb",
            "ingest.chunk_size": 120, "ingest.chunk_overlap": 20, "ingest.write_batch": 2,
        })
        client = chromadb.PersistentClient(
            path=str(self.workdir / "chroma"), settings=ChromaSettings(anonymized_telemetry=False)
        )
        self.store = Chroma(
            client=client, collection_name="prop_kb", embedding_function=HashEmbeddings(),
            collection_configuration={"hnsw": {"space": "cosine"}},
        )

    def teardown(self) -> None:
        if hasattr(self, "workdir"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _sync(self) -> None:
        ingest_paths([self.root], self.settings, prune=True, store=self.store)

    def _files(self) -> list[str]:
        return sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())

    def _write(self, name: str, text: str) -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    @rule(name=st.sampled_from(NAMES), text=content)
    def add_or_change(self, name: str, text: str) -> None:
        self._write(name, text)
        self._sync()

    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        files = self._files()
        if files:
            (self.root / data.draw(st.sampled_from(files))).unlink()
        self._sync()

    @rule(data=st.data(), target_name=st.sampled_from(NAMES))
    def move_file(self, data: st.DataObject, target_name: str) -> None:
        files = self._files()
        if files:
            source = self.root / data.draw(st.sampled_from(files))
            (self.root / target_name).parent.mkdir(parents=True, exist_ok=True)
            source.rename(self.root / target_name)
        self._sync()

    @rule()
    def move_tree(self) -> None:
        """The whole folder to another place: nothing may be re-added or removed."""
        before = self.store._collection.count()
        destination = self.parents[1] if self.root.parent == self.parents[0] else self.parents[0]
        self.root = self.root.rename(destination / "docs")
        report = ingest_paths([self.root], self.settings, prune=True, store=self.store)
        assert (report.chunks_added, report.chunks_removed) == (0, 0)
        assert self.store._collection.count() == before

    @rule(name=st.sampled_from(NAMES), text=content, point=st.sampled_from(KILL_POINTS), call=st.integers(1, 3))
    def kill_then_rerun(self, name: str, text: str, point: tuple[object, str], call: int) -> None:
        self._write(name, text)
        files = self._files()
        if len(files) > 1:
            (self.root / files[0]).unlink()  # a prune for the killed run to do as well
        with _dies_at(point, call):
            try:
                self._sync()
            except Killed:
                pass
        self._sync()

    @invariant()
    def store_equals_files(self) -> None:
        if not hasattr(self, "workdir"):
            return
        expected: dict[str, set[str]] = {}
        for name in self._files():
            source = f"docs/{name}"
            document = load_document(self.root / name, self.settings.ingest)
            expected[source] = {chunk.id for chunk in chunk_document(document, source, self.settings.ingest)}
        got = self.store._collection.get(include=["metadatas"])
        actual: dict[str, set[str]] = {}
        for chunk_id, metadata in zip(got["ids"], got["metadatas"], strict=True):
            actual.setdefault(str(metadata["source"]), set()).add(chunk_id)
        assert actual == expected
        assert bm25_ids(index_path(self.settings)) == set(got["ids"])  # as the last run left it
        manifest = Manifest(index_path(self.settings))
        try:
            assert set(manifest.entries()) == set(expected)
            assert manifest.pending_orphans() == []
            lexical_ids = {row[0] for row in manifest.connection.execute("SELECT id FROM lexical_chunks")}
            assert lexical_ids == set(got["ids"])
        finally:
            manifest.close()


SyncMachine.TestCase.settings = settings(
    max_examples=15, stateful_step_count=8, deadline=None, suppress_health_check=list(HealthCheck)
)


@pytest.mark.slow
class TestSync(SyncMachine.TestCase):
    pass
