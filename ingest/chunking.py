"""Split a loaded document into chunks whose IDs hash (source, text): re-ingesting adds nothing.

`source` is the path relative to the ingest root, led by the root folder's name, so moving the
whole tree keeps every ID and a re-ingest from the new place recognises every chunk.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from langchain_text_splitters import Language, RecursiveCharacterTextSplitter

from configs.settings import ConfigError, IngestSettings
from ingest.loaders import DocumentKind, LoadedDocument, MetadataValue


@dataclass(frozen=True)
class Chunk:
    id: str
    text: str
    metadata: dict[str, MetadataValue]


def chunk_id(source: str, text: str) -> str:
    """Same source and same text give the same ID: unchanged chunks are recognised on re-ingest."""
    return hashlib.sha256(f"{source}\x00{text}".encode()).hexdigest()


def chunking_signature(settings: IngestSettings) -> str:
    """What besides a file's bytes decides its chunks: a change re-chunks every file."""
    return (
        f"size={settings.chunk_size};overlap={settings.chunk_overlap};"
        f"jsonl={settings.jsonl_text_field}:{','.join(settings.jsonl_metadata_fields)};v=2"
    )


def check_chunk_settings(settings: IngestSettings) -> None:
    if settings.chunk_overlap >= settings.chunk_size:
        raise ConfigError(
            f"ingest.chunk_overlap ({settings.chunk_overlap}) must be smaller than "
            f"ingest.chunk_size ({settings.chunk_size})"
        )


def make_splitter(settings: IngestSettings, kind: DocumentKind) -> RecursiveCharacterTextSplitter:
    check_chunk_settings(settings)
    sizes = {"chunk_size": settings.chunk_size, "chunk_overlap": settings.chunk_overlap}
    if kind == "markdown":
        # Within a heading's section, prefer cutting at lower-level structure (lists, code, paragraphs).
        return RecursiveCharacterTextSplitter.from_language(Language.MARKDOWN, **sizes)
    return RecursiveCharacterTextSplitter(**sizes)


def chunk_document(document: LoadedDocument, source: str, settings: IngestSettings) -> list[Chunk]:
    splitter = make_splitter(settings, document.kind)
    chunks: list[Chunk] = []
    seen: set[str] = set()
    for section in document.sections:
        for text in splitter.split_text(section.text):
            identity = chunk_id(source, text)
            if identity in seen:  # the same text twice in one file is stored once
                continue
            seen.add(identity)
            metadata: dict[str, MetadataValue] = {
                **section.metadata,
                "source": source,
                "title": document.title,
                "chunk_index": len(chunks),
            }
            if section.page is not None:
                metadata["page"] = section.page
            if section.heading:
                metadata["heading"] = section.heading
            chunks.append(Chunk(identity, text, metadata))
    return chunks
