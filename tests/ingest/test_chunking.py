from __future__ import annotations

import pytest

from configs.settings import ConfigError, IngestSettings
from ingest.chunking import chunk_document, chunk_id
from ingest.loaders import LoadedDocument, Section


def test_chunk_id_depends_on_source_and_text() -> None:
    assert chunk_id("a.md", "hello") == chunk_id("a.md", "hello")
    assert chunk_id("a.md", "hello") != chunk_id("b.md", "hello")
    assert chunk_id("a.md", "hello") != chunk_id("a.md", "hello!")


def test_chunks_respect_size_and_carry_metadata() -> None:
    paragraphs = [f"Paragraph {n} talks about topic {n} in some detail. " * 4 for n in range(12)]
    document = LoadedDocument("Long read", "markdown", [Section("\n\n".join(paragraphs))])
    settings = IngestSettings(chunk_size=300, chunk_overlap=40)

    chunks = chunk_document(document, "/docs/long.md", settings)

    assert len(chunks) > 5
    assert all(len(chunk.text) <= 300 for chunk in chunks)
    assert [chunk.metadata["chunk_index"] for chunk in chunks] == list(range(len(chunks)))
    assert {chunk.metadata["source"] for chunk in chunks} == {"/docs/long.md"}
    assert {chunk.metadata["title"] for chunk in chunks} == {"Long read"}
    assert all("page" not in chunk.metadata for chunk in chunks)
    assert len({chunk.id for chunk in chunks}) == len(chunks)


def test_pdf_chunks_carry_page_and_repeated_text_is_stored_once() -> None:
    document = LoadedDocument(
        "Manual", "pdf", [Section("Same footer text", 1), Section("Same footer text", 2), Section("Real content", 3)]
    )
    chunks = chunk_document(document, "/docs/manual.pdf", IngestSettings())
    assert [(chunk.text, chunk.metadata["page"]) for chunk in chunks] == [
        ("Same footer text", 1),
        ("Real content", 3),
    ]


def test_overlap_not_smaller_than_size_is_a_config_error() -> None:
    document = LoadedDocument("t", "text", [Section("text")])
    with pytest.raises(ConfigError, match="chunk_overlap"):
        chunk_document(document, "s", IngestSettings(chunk_size=100, chunk_overlap=100))
