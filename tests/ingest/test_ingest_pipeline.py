"""The pipeline on the real stack: packaged MiniLM embeddings and Chroma on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from configs.settings import AppSettings
from ingest.pipeline import IngestError, discover_files, ingest_paths
from retrieval.retriever import build_retriever
from retrieval.store import ids_of_source, open_store

pytestmark = pytest.mark.slow


def test_discover_recurses_and_skips_hidden(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / ".git").mkdir()
    for name in ("a/one.md", "a/b/two.txt", ".git/config", "a/.hidden.md"):
        (tmp_path / name).write_text("x")
    found = discover_files([tmp_path, tmp_path / "a" / "one.md"])
    assert sorted(path.relative_to(tmp_path).as_posix() for path in found) == ["a/b/two.txt", "a/one.md"]


def test_missing_path_is_an_error_before_anything_is_written(tmp_path: Path, store_settings: AppSettings) -> None:
    with pytest.raises(IngestError, match="no such file or directory"):
        ingest_paths([tmp_path / "nope"], store_settings)
    assert not store_settings.vector_store.persist_dir.exists()


def test_every_format_is_ingested_and_retrievable(sample_docs: Path, store_settings: AppSettings) -> None:
    report = ingest_paths([sample_docs], store_settings)

    assert (report.files_seen, report.files_ingested, report.skipped) == (4, 4, [])
    assert report.chunks_added == 5  # one chunk per file, the PDF has two pages
    retriever = build_retriever(store_settings)
    expectations = {
        "What temperature does the Zorblax reactor run at?": "reactor.txt",
        "How much sunlight do tomatoes need?": "garden.md",
        "When does the maritime museum open?": "museum.html",
        "How deep can the research submarine dive?": "submarine.pdf",
    }
    for question, expected in expectations.items():
        best = retriever.search(question)[0]
        assert Path(best.source).name == expected, question
    submarine = retriever.search("How deep can the research submarine dive?")[0]
    assert submarine.metadata["page"] == 2
    assert submarine.metadata["title"] == "Submarine manual"
    museum = retriever.search("When does the maritime museum open?")[0]
    assert "marmalade" not in museum.text


def test_reingest_adds_nothing(sample_docs: Path, store_settings: AppSettings) -> None:
    first = ingest_paths([sample_docs], store_settings)
    second = ingest_paths([sample_docs], store_settings)
    assert second.chunks_added == 0
    assert second.chunks_present == first.chunks_added
    assert open_store(store_settings)._collection.count() == first.chunks_added


def test_changed_file_replaces_its_chunks(sample_docs: Path, store_settings: AppSettings) -> None:
    ingest_paths([sample_docs], store_settings)
    reactor = sample_docs / "reactor.txt"
    store = open_store(store_settings)
    old_ids = ids_of_source(store, str(reactor.resolve()))

    reactor.write_text("The Zorblax reactor was retired in 2031 and replaced by solar panels.\n")
    report = ingest_paths([sample_docs], store_settings)

    new_ids = ids_of_source(store, str(reactor.resolve()))
    assert (report.chunks_added, report.chunks_removed, report.chunks_present) == (1, 1, 4)
    assert len(new_ids) == 1 and not new_ids & old_ids
    best = build_retriever(store_settings).search("What happened to the Zorblax reactor?")[0]
    assert "retired in 2031" in best.text


def test_bad_files_are_skipped_and_reported_while_the_rest_go_in(
    sample_docs: Path, store_settings: AppSettings
) -> None:
    (sample_docs / "broken.pdf").write_bytes(b"%PDF-1.7\nthis file was truncated")
    (sample_docs / "archive.xyz").write_bytes(b"\x00\x01")

    report = ingest_paths([sample_docs], store_settings)

    assert report.files_seen == 6
    assert report.files_ingested == 4
    assert report.chunks_added == 5
    assert sorted((path.name, reason) for path, reason in report.skipped) == [
        ("archive.xyz", "unsupported type"),
        ("broken.pdf", "not a valid PDF"),
    ]
    assert "broken.pdf (not a valid PDF)" in report.summary()
