"""HttpClient mode against a real `chroma run` server: ingest over HTTP, then search over HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest

from configs.settings import AppSettings
from ingest.pipeline import ingest_paths
from retrieval.retriever import build_retriever
from retrieval.store import open_store

pytestmark = pytest.mark.slow


def test_ingest_and_search_through_a_chroma_server(
    chroma_server: str, store_settings: AppSettings, tmp_path: Path
) -> None:
    settings = store_settings.model_copy(
        update={"vector_store": store_settings.vector_store.model_copy(update={"server_url": chroma_server})}
    )
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "ferry.md").write_text("# Ferry\n\nThe island ferry leaves the harbour every ninety minutes.\n")
    (docs / "library.txt").write_text("The city library lends telescopes for two weeks at a time.\n")

    first = ingest_paths([docs], settings)
    second = ingest_paths([docs], settings)

    assert (first.chunks_added, second.chunks_added, second.chunks_present) == (2, 0, 2)
    assert not (settings.vector_store.persist_dir / "chroma.sqlite3").exists()  # no embedded store was made
    hits = build_retriever(settings).search("How often does the ferry leave?")
    assert Path(hits[0].source).name == "ferry.md"
    assert open_store(settings)._collection.count() == 2

    # Sync over HTTP too: a changed file replaces its chunk, a deleted one is pruned, hybrid search sees it.
    (docs / "ferry.md").write_text("# Ferry\n\nThe island ferry now leaves the harbour every half hour.\n")
    (docs / "library.txt").unlink()
    synced = ingest_paths([docs], settings, prune=True)
    assert (synced.chunks_added, synced.files_removed, synced.chunks_removed) == (1, 1, 2)
    store = open_store(settings)
    assert store._collection.count() == 1
    best = build_retriever(settings).search("ferry half hour", hybrid=True)[0]
    assert "half hour" in best.text and best.citation == "docs/ferry.md > Ferry"
