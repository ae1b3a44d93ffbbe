"""Keep the store equal to the files: add new and changed files, prune vanished ones, survive crashes.

A file's `source` is its path relative to the folder named on the command line, led by that folder's
name (`docs/guide/setup.md`), or the bare file name for a file named directly. The manifest
(ingest/manifest.py) records each source's content hash and chunk IDs and orders every write.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from langchain_chroma import Chroma
from tqdm import tqdm

from configs.errors import AppError
from configs.settings import AppSettings
from ingest.chunking import Chunk, check_chunk_settings, chunk_document, chunking_signature
from ingest.loaders import DocumentLoadError, load_document
from ingest.manifest import FileUpdate, Manifest, remove_index_files
from retrieval.store import (
    delete_ids,
    drop_collection,
    index_path,
    open_store,
    update_metadata,
    write_embedded,
)

logger = logging.getLogger(__name__)


class IngestError(AppError):
    """The ingest request itself is unusable (e.g. a path that does not exist)."""


@dataclass
class IngestReport:
    files_seen: int = 0
    files_ingested: int = 0  # new or changed, written
    files_unchanged: int = 0
    files_removed: int = 0  # pruned or deleted
    chunks_added: int = 0
    chunks_present: int = 0
    chunks_removed: int = 0  # replaced chunks of changed files, and chunks of removed files
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # records skipped inside ingested files (JSONL)

    def summary(self) -> str:
        files = f"{self.files_seen} file{'' if self.files_seen == 1 else 's'}"
        line = (
            f"{files}: {self.files_ingested} ingested, {self.files_unchanged} unchanged, "
            f"{self.files_removed} removed; chunks: {self.chunks_added} added, {self.chunks_present} "
            f"already present, {self.chunks_removed} removed; {len(self.skipped)} skipped"
        )
        if self.skipped:
            line += ": " + ", ".join(f"{path} ({reason})" for path, reason in self.skipped)
        if self.problems:
            line += f"; {len(self.problems)} records skipped: " + ", ".join(self.problems[:10])
        return line


@dataclass(frozen=True)
class SourceFile:
    path: Path
    source: str  # the name the store and the citations use


@dataclass(frozen=True)
class _Work:
    file: SourceFile
    content_hash: str
    chunks: list[Chunk]
    new: list[Chunk]  # chunks whose IDs the store does not hold yet


def discover_files(paths: Iterable[Path | str]) -> tuple[list[SourceFile], list[str]]:
    """The files named, and every file under the folders named (hidden entries skipped), with their
    sources; and the source prefix of every folder named, for pruning."""
    found: dict[str, SourceFile] = {}  # source -> file: the first path giving a source wins
    prefixes: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            found.setdefault(path.name, SourceFile(path, path.name))
        elif path.is_dir():
            prefix = path.resolve().name
            prefixes.append(prefix)
            for child in sorted(path.rglob("*")):
                relative = child.relative_to(path)
                if child.is_file() and not any(part.startswith(".") for part in relative.parts):
                    source = "/".join(filter(None, (prefix, relative.as_posix())))
                    found.setdefault(source, SourceFile(child, source))
        else:
            raise IngestError(f"no such file or directory: {path}")
    return list(found.values()), prefixes


class _StoreHandle:
    """Opens the store at first need: a run with nothing to write never loads the embedder."""

    def __init__(self, settings: AppSettings, store: Chroma | None) -> None:
        self.settings = settings
        self.store = store

    def get(self) -> Chroma:
        if self.store is None:
            self.store = open_store(self.settings)
        return self.store


def ingest_paths(
    paths: Sequence[Path | str],
    settings: AppSettings,
    *,
    prune: bool = False,
    progress: bool = False,
    store: Chroma | None = None,
) -> IngestReport:
    """Bring the store in line with the files; with `prune`, drop files gone from the folders named."""
    check_chunk_settings(settings.ingest)
    files, prefixes = discover_files(paths)
    report = IngestReport(files_seen=len(files))
    handle = _StoreHandle(settings, store)
    manifest = Manifest(index_path(settings))
    try:
        _recover(manifest, handle)
        work = _plan(files, manifest, settings, report)
        _write(work, manifest, handle, settings, report, progress)
        if prune:
            seen = {file.source for file in files}
            stale = [s for s in manifest.entries() if s not in seen and _under_any(s, prefixes)]
            _remove(stale, manifest, handle, report)
    finally:
        manifest.close()
    logger.info("ingest finished: %s", report.summary())
    return report


def delete_sources(sources: Sequence[str], settings: AppSettings, *, store: Chroma | None = None) -> IngestReport:
    """Remove sources (exact, or every source under one ending in "/") and their chunks."""
    report = IngestReport()
    manifest = Manifest(index_path(settings))
    handle = _StoreHandle(settings, store)
    try:
        _recover(manifest, handle)
        known = manifest.entries()
        chosen: list[str] = []
        for wanted in sources:
            matches = [s for s in known if s.startswith(wanted)] if wanted.endswith("/") else [wanted] * (wanted in known)
            if not matches:
                raise IngestError(
                    f"no source {wanted!r} in the knowledge base; sources are paths like "
                    f"{next(iter(known), 'docs/guide.md')!r} (end with / for a whole folder)"
                )
            chosen.extend(m for m in matches if m not in chosen)
        _remove(chosen, manifest, handle, report)
    finally:
        manifest.close()
    return report


def reset_store(settings: AppSettings) -> bool:
    """Delete the collection and its manifest; True when there was a collection."""
    dropped = drop_collection(settings)
    remove_index_files(index_path(settings))
    return dropped


def _under_any(source: str, prefixes: Sequence[str]) -> bool:
    return any(not prefix or source.startswith(prefix + "/") for prefix in prefixes)


def _recover(manifest: Manifest, handle: _StoreHandle) -> None:
    """Undo what an interrupted run left: chunks written but never committed, or replaced but not deleted."""
    orphans = manifest.pending_orphans()
    if orphans:
        logger.warning("removing %d chunks left by an interrupted ingest", len(orphans))
        delete_ids(handle.get(), orphans)
        manifest.clear_pending(orphans)


def _plan(files: Sequence[SourceFile], manifest: Manifest, settings: AppSettings, report: IngestReport) -> list[_Work]:
    """Load and chunk the files whose content changed since the manifest recorded them."""
    entries = manifest.entries()
    signature = chunking_signature(settings.ingest).encode()
    work: list[_Work] = []
    for file in files:
        try:
            content_hash = hashlib.sha256(signature + file.path.read_bytes()).hexdigest()
            recorded = entries.get(file.source)
            if recorded is not None and recorded[0] == content_hash:
                report.files_unchanged += 1
                report.chunks_present += recorded[1]
                continue
            document = load_document(file.path, settings.ingest)
        except OSError as exc:
            _skip(report, file, f"unreadable: {exc.strerror or exc}")
            continue
        except DocumentLoadError as exc:
            _skip(report, file, exc.reason)
            continue
        report.problems.extend(f"{file.source} {problem}" for problem in document.problems)
        chunks = chunk_document(document, file.source, settings.ingest)
        held = manifest.chunk_ids(file.source)
        work.append(_Work(file, content_hash, chunks, [chunk for chunk in chunks if chunk.id not in held]))
    return work


def _skip(report: IngestReport, file: SourceFile, reason: str) -> None:
    # A skipped file keeps whatever it had in the store: unreadable now is not proof it is gone.
    logger.info("skipped %s: %s", file.path, reason)
    report.skipped.append((file.path, reason))


def _groups(work: Sequence[_Work], size: int) -> Iterator[list[_Work]]:
    """Whole files, in groups of at least `size` new chunks: embedding batches stay full on small files."""
    group: list[_Work] = []
    pending = 0
    for item in work:
        group.append(item)
        pending += len(item.new)
        if pending >= size:
            yield group
            group, pending = [], 0
    if group:
        yield group


def _write(
    work: Sequence[_Work],
    manifest: Manifest,
    handle: _StoreHandle,
    settings: AppSettings,
    report: IngestReport,
    progress: bool,
) -> None:
    total = sum(len(item.new) for item in work)
    with tqdm(total=total, desc="embedding", unit="chunk", disable=not progress or total == 0) as bar:
        for group in _groups(work, settings.ingest.write_batch):
            new = [chunk for item in group for chunk in item.new]
            store = handle.get()
            if new:
                # Embed the whole group before writing any of it: a failure leaves the store as it was.
                vectors = store.embeddings.embed_documents([chunk.text for chunk in new])
                ids = [chunk.id for chunk in new]
                manifest.mark_pending(ids)
                write_embedded(store, ids, [c.text for c in new], vectors, [c.metadata for c in new])
            # An edited file's unchanged chunks keep their ids but may sit elsewhere now (chunk_index, heading):
            # the retriever reads a chunk's follower by its place in the file.
            new_ids = {chunk.id for chunk in new}
            kept = [chunk for item in group for chunk in item.chunks if chunk.id not in new_ids]
            if kept:
                update_metadata(store, [chunk.id for chunk in kept], [chunk.metadata for chunk in kept])
            replaced = manifest.commit(
                [FileUpdate(item.file.source, item.content_hash, [(c.id, _searchable(c)) for c in item.chunks])
                 for item in group]
            )
            delete_ids(store, replaced)
            manifest.clear_pending(replaced)
            report.files_ingested += len(group)
            report.chunks_added += len(new)
            report.chunks_present += sum(len(item.chunks) - len(item.new) for item in group)
            report.chunks_removed += len(replaced)
            bar.update(len(new))


def _searchable(chunk: Chunk) -> str:
    """BM25 sees the title and heading path too: a question naming a section finds its chunks."""
    parts = (chunk.metadata.get("title"), chunk.metadata.get("heading"), chunk.text)
    return "\n".join(str(part) for part in parts if part)


def _remove(sources: Sequence[str], manifest: Manifest, handle: _StoreHandle, report: IngestReport) -> None:
    if not sources:
        return
    ids = manifest.remove(sources)
    delete_ids(handle.get(), ids)
    manifest.clear_pending(ids)
    report.files_removed += len(sources)
    report.chunks_removed += len(ids)
    logger.info("removed %d sources (%d chunks)", len(sources), len(ids))
