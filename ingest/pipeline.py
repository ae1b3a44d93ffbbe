"""Files and folders in, chunks in Chroma out: idempotent, and one bad file never stops the rest."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from langchain_chroma import Chroma
from tqdm import tqdm

from configs.errors import AppError
from configs.settings import AppSettings
from ingest.chunking import check_chunk_settings, chunk_document
from ingest.loaders import DocumentLoadError, LoadedDocument, load_document
from retrieval.store import delete_ids, existing_ids, ids_of_source, open_store, write_embedded

logger = logging.getLogger(__name__)


class IngestError(AppError):
    """The ingest request itself is unusable (e.g. a path that does not exist)."""


@dataclass
class IngestReport:
    files_seen: int = 0
    files_ingested: int = 0
    chunks_added: int = 0
    chunks_present: int = 0
    chunks_removed: int = 0  # stale chunks of files whose content changed
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def summary(self) -> str:
        files = f"{self.files_seen} file{'' if self.files_seen == 1 else 's'}"
        parts = [files, f"{self.chunks_added} chunks added", f"{self.chunks_present} already present"]
        if self.chunks_removed:
            parts.append(f"{self.chunks_removed} outdated removed")
        line = ", ".join(parts) + f", {len(self.skipped)} skipped"
        if self.skipped:
            line += ": " + ", ".join(f"{path} ({reason})" for path, reason in self.skipped)
        return line


def discover_files(paths: Iterable[Path | str]) -> list[Path]:
    """The files named, and every file under the folders named, skipping hidden entries in folders."""
    found: dict[Path, Path] = {}  # resolved -> as discovered, so a file named twice is read once
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            found.setdefault(path.resolve(), path)
        elif path.is_dir():
            for child in sorted(path.rglob("*")):
                hidden = any(part.startswith(".") for part in child.relative_to(path).parts)
                if child.is_file() and not hidden:
                    found.setdefault(child.resolve(), child)
        else:
            raise IngestError(f"no such file or directory: {path}")
    return list(found.values())


def ingest_paths(
    paths: Sequence[Path | str],
    settings: AppSettings,
    *,
    progress: bool = False,
    store: Chroma | None = None,
) -> IngestReport:
    """Ingest files and folders into the knowledge base; pass `store` to reuse an open one."""
    check_chunk_settings(settings.ingest)
    files = discover_files(paths)
    report = IngestReport(files_seen=len(files))
    for path in tqdm(files, desc="ingest", unit="file", disable=not progress):
        try:
            document = load_document(path)
        except DocumentLoadError as exc:
            logger.info("skipped %s: %s", path, exc.reason)
            report.skipped.append((path, exc.reason))
            continue
        if store is None:  # opened at the first usable file: unusable files alone never load the embedder
            store = open_store(settings)
        _write_document(path, document, store, settings, report)
    logger.info("ingest finished: %s", report.summary())
    return report


def _write_document(
    path: Path, document: LoadedDocument, store: Chroma, settings: AppSettings, report: IngestReport
) -> None:
    source = str(path.resolve())
    chunks = chunk_document(document, source, settings.ingest)
    present = existing_ids(store, [chunk.id for chunk in chunks])
    new = [chunk for chunk in chunks if chunk.id not in present]
    if new:
        # Embed the whole file before writing any of it, so a failure leaves the store as it was.
        vectors = store.embeddings.embed_documents([chunk.text for chunk in new])
        write_embedded(
            store,
            ids=[chunk.id for chunk in new],
            texts=[chunk.text for chunk in new],
            embeddings=vectors,
            metadatas=[chunk.metadata for chunk in new],
        )
    outdated = ids_of_source(store, source) - {chunk.id for chunk in chunks}
    delete_ids(store, sorted(outdated))
    report.files_ingested += 1
    report.chunks_added += len(new)
    report.chunks_present += len(present)
    report.chunks_removed += len(outdated)
    logger.debug("%s: %d new, %d present, %d outdated", path, len(new), len(present), len(outdated))
