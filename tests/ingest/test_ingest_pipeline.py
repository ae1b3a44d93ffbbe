"""The pipeline on the real stack: packaged MiniLM embeddings and Chroma on disk."""

from __future__ import annotations

from pathlib import Path
from unittest.mock import patch

import pytest

from configs.settings import AppSettings
from ingest.pipeline import IngestError, delete_sources, discover_files, ingest_paths, reset_store
from retrieval.retriever import build_retriever
from retrieval.store import ids_of_source, open_store

pytestmark = pytest.mark.slow


def test_discover_recurses_and_skips_hidden(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / ".git").mkdir()
    for name in ("a/one.md", "a/b/two.txt", ".git/config", "a/.hidden.md"):
        (tmp_path / name).write_text("x")
    found, prefixes = discover_files([tmp_path / "a", tmp_path / "a" / "one.md"])
    assert sorted(file.source for file in found) == ["a/b/two.txt", "a/one.md", "one.md"]
    assert prefixes == ["a"]


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
    old_ids = ids_of_source(store, "docs/reactor.txt")

    reactor.write_text("The Zorblax reactor was retired in 2031 and replaced by solar panels.\n")
    report = ingest_paths([sample_docs], store_settings)

    new_ids = ids_of_source(store, "docs/reactor.txt")
    assert (report.chunks_added, report.chunks_removed, report.chunks_present) == (1, 1, 4)
    assert (report.files_ingested, report.files_unchanged) == (1, 3)
    assert len(new_ids) == 1 and not new_ids & old_ids
    best = build_retriever(store_settings).search("What happened to the Zorblax reactor?")[0]
    assert "retired in 2031" in best.text


def test_an_edit_keeps_unchanged_chunks_and_their_followers_stay_true(
    tmp_path: Path, store_settings: AppSettings
) -> None:
    settings = store_settings.model_copy(update={"ingest": store_settings.ingest.model_copy(
        update={"chunk_size": 80, "chunk_overlap": 0})})
    guide = tmp_path / "kb" / "guide.md"
    guide.parent.mkdir()
    paragraphs = ["Leads must meet the following criteria to run a call.",
                  "They have joined at least two major incident calls.", "They write clearly and calmly."]
    guide.write_text("\n\n".join(paragraphs) + "\n")
    ingest_paths([guide.parent], settings)
    retriever = build_retriever(settings)
    lead_in = retriever.search("criteria to run a call", k=1)[0]
    assert [c.text for c in retriever.adjacent([lead_in.id])] == [paragraphs[1]]

    guide.write_text("\n\n".join(["A new opening paragraph comes first now.", *paragraphs]) + "\n")
    report = ingest_paths([guide.parent], settings)

    assert (report.chunks_added, report.chunks_removed) == (1, 0)  # the three paragraphs kept their ids
    moved = retriever.search("criteria to run a call", k=1)[0]
    assert moved.id == lead_in.id and moved.metadata["chunk_index"] == 1
    assert [c.text for c in retriever.adjacent([moved.id])] == [paragraphs[1]]


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


def _store_state(settings: AppSettings) -> dict[str, set[str]]:
    """source -> chunk ids actually in Chroma."""
    got = open_store(settings)._collection.get(include=["metadatas"])
    state: dict[str, set[str]] = {}
    for chunk_id, metadata in zip(got["ids"], got["metadatas"], strict=True):
        state.setdefault(str(metadata["source"]), set()).add(chunk_id)
    return state


def test_prune_delete_and_reset(sample_docs: Path, store_settings: AppSettings) -> None:
    ingest_paths([sample_docs], store_settings)
    (sample_docs / "museum.html").unlink()

    kept = ingest_paths([sample_docs], store_settings)  # without --prune a vanished file stays
    assert "docs/museum.html" in _store_state(store_settings)
    assert kept.files_removed == 0

    pruned = ingest_paths([sample_docs], store_settings, prune=True)
    assert (pruned.files_removed, pruned.chunks_removed) == (1, 1)
    assert sorted(_store_state(store_settings)) == ["docs/nested/garden.md", "docs/reactor.txt", "docs/submarine.pdf"]

    deleted = delete_sources(["docs/nested/", "docs/reactor.txt"], store_settings)
    assert deleted.files_removed == 2
    assert sorted(_store_state(store_settings)) == ["docs/submarine.pdf"]
    with pytest.raises(IngestError, match="no source 'docs/nope.md'"):
        delete_sources(["docs/nope.md"], store_settings)

    assert reset_store(store_settings)
    assert _store_state(store_settings) == {}
    assert ingest_paths([sample_docs], store_settings).chunks_added == 4  # the manifest went with it


def test_moving_the_whole_tree_adds_nothing(sample_docs: Path, store_settings: AppSettings, tmp_path: Path) -> None:
    first = ingest_paths([sample_docs], store_settings)
    moved = tmp_path / "elsewhere" / "docs"
    moved.parent.mkdir()
    sample_docs.rename(moved)

    again = ingest_paths([moved], store_settings, prune=True)

    assert (again.chunks_added, again.files_removed, again.files_unchanged) == (0, 0, 4)
    assert open_store(store_settings)._collection.count() == first.chunks_added


def test_an_interrupted_write_is_undone_by_the_next_run(sample_docs: Path, store_settings: AppSettings) -> None:
    ingest_paths([sample_docs], store_settings)
    (sample_docs / "reactor.txt").write_text("The Zorblax reactor now runs at 300 kelvin.\n")
    (sample_docs / "extra.txt").write_text("A brand new page about lighthouses.\n")

    # Killed after Chroma took the new chunks but before the manifest committed them.
    with patch("ingest.pipeline.Manifest.commit", side_effect=KeyboardInterrupt), pytest.raises(KeyboardInterrupt):
        ingest_paths([sample_docs], store_settings)
    assert len(_store_state(store_settings)["docs/reactor.txt"]) == 2  # old and new chunk, for now

    report = ingest_paths([sample_docs], store_settings)

    state = _store_state(store_settings)
    assert (report.files_ingested, report.files_unchanged) == (2, 3)
    assert {source: len(ids) for source, ids in state.items()} == {
        "docs/reactor.txt": 1, "docs/extra.txt": 1, "docs/museum.html": 1,
        "docs/nested/garden.md": 1, "docs/submarine.pdf": 2,
    }
    assert "300 kelvin" in build_retriever(store_settings).search("Zorblax reactor temperature")[0].text
