"""The ingest manifest: which files are in the store, with which content and chunk IDs.

It is an SQLite file beside the collection (`retrieval.store.index_path`) that also holds the chunk
texts of the BM25 index (retrieval/lexical.py), whose tantivy folder follows each commit. Its
transactions are the commit points of an ingest, and the Chroma writes are ordered around them so
that a crash at any moment leaves only work that the next run undoes or redoes:

1. `mark_pending(new ids)` (commit)  -> a crash after it leaves chunks nobody committed;
2. Chroma upsert of the new chunks;
3. `commit(files)` (commit): entries, chunk IDs and BM25 texts swap to the new content in one
   transaction, and the replaced chunks' IDs become pending; then the tantivy index follows (a run
   killed before it did leaves it behind, and the next open rebuilds it);
4. Chroma delete of the replaced chunks, then `clear_pending`.

At start, `pending_orphans()` lists every pending ID that no committed file owns: deleting them
from Chroma finishes an interrupted step 1-4, whichever it was.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from retrieval import lexical

_SQL_VARIABLES = 900


@dataclass(frozen=True)
class FileUpdate:
    source: str
    content_hash: str
    chunks: list[tuple[str, str]]  # (chunk id, text to index for BM25)


class Manifest:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.connection = sqlite3.connect(path)
        self.connection.execute("PRAGMA journal_mode=WAL")  # readers (the retriever) never block the ingest
        self.connection.execute("PRAGMA synchronous=FULL")
        with self.connection:
            self.connection.execute(
                "CREATE TABLE IF NOT EXISTS files (source TEXT PRIMARY KEY, content_hash TEXT NOT NULL, "
                "chunk_count INTEGER NOT NULL, ingested_at REAL NOT NULL)"
            )
            self.connection.execute(
                "CREATE TABLE IF NOT EXISTS chunks (id TEXT PRIMARY KEY, source TEXT NOT NULL)"
            )
            self.connection.execute("CREATE INDEX IF NOT EXISTS chunks_by_source ON chunks (source)")
            self.connection.execute("CREATE TABLE IF NOT EXISTS pending (id TEXT PRIMARY KEY)")
            lexical.create_schema(self.connection)
        self.bm25 = lexical.Bm25Writer(lexical.bm25_dir(path))
        self.bm25.ensure(self.connection)

    def close(self) -> None:
        self.connection.close()

    def entries(self) -> dict[str, tuple[str, int]]:
        """source -> (content hash, chunk count)."""
        rows = self.connection.execute("SELECT source, content_hash, chunk_count FROM files")
        return {source: (content_hash, count) for source, content_hash, count in rows}

    def chunk_ids(self, source: str) -> set[str]:
        return {row[0] for row in self.connection.execute("SELECT id FROM chunks WHERE source = ?", (source,))}

    def chunk_count(self) -> int:
        return self.connection.execute("SELECT count(*) FROM chunks").fetchone()[0]

    def mark_pending(self, ids: Iterable[str]) -> None:
        with self.connection:
            self.connection.executemany("INSERT OR IGNORE INTO pending (id) VALUES (?)", ((i,) for i in ids))

    def commit(self, updates: Sequence[FileUpdate]) -> list[str]:
        """Swap every file to its new chunks in one transaction; returns the replaced chunks' IDs."""
        replaced: list[str] = []
        added: list[tuple[str, str]] = []
        now = time.time()
        with self.connection:
            for update in updates:
                new_ids = {chunk_id for chunk_id, _ in update.chunks}
                old = sorted(self.chunk_ids(update.source) - new_ids)
                self._forget(old)
                self.connection.executemany(
                    "INSERT OR IGNORE INTO chunks (id, source) VALUES (?, ?)",
                    ((chunk_id, update.source) for chunk_id in new_ids),
                )
                added += lexical.add_chunks(self.connection, update.chunks)
                self.connection.execute(
                    "INSERT OR REPLACE INTO files (source, content_hash, chunk_count, ingested_at) VALUES (?, ?, ?, ?)",
                    (update.source, update.content_hash, len(new_ids), now),
                )
                self.connection.executemany("DELETE FROM pending WHERE id = ?", ((i,) for i in new_ids))
                replaced.extend(old)
            target = self._next_generation(added, replaced)
        self._follow_in_bm25(added, replaced, target)
        return replaced

    def remove(self, sources: Sequence[str]) -> list[str]:
        """Drop files from the manifest in one transaction; returns their chunks' IDs (now pending)."""
        removed: list[str] = []
        with self.connection:
            for source in sources:
                ids = sorted(self.chunk_ids(source))
                self._forget(ids)
                self.connection.execute("DELETE FROM files WHERE source = ?", (source,))
                removed.extend(ids)
            target = self._next_generation([], removed)
        self._follow_in_bm25([], removed, target)
        return removed

    def _next_generation(self, added: Sequence[tuple[str, str]], removed: Sequence[str]) -> int | None:
        """Inside the transaction: a change to the texts is a new generation for the tantivy index to reach."""
        return lexical.bump_generation(self.connection) if added or removed else None

    def _follow_in_bm25(self, added: Sequence[tuple[str, str]], removed: Sequence[str], target: int | None) -> None:
        """After the commit: the tantivy index takes the same change."""
        if target is not None:
            self.bm25.apply(self.connection, added, removed, target)

    def _forget(self, ids: Sequence[str]) -> None:
        """Inside a transaction: the chunks leave the manifest and BM25, and wait in `pending` for deletion."""
        for start in range(0, len(ids), _SQL_VARIABLES):
            batch = list(ids[start : start + _SQL_VARIABLES])
            self.connection.execute(f"DELETE FROM chunks WHERE id IN ({','.join('?' * len(batch))})", batch)
        lexical.remove_chunks(self.connection, ids)
        self.connection.executemany("INSERT OR IGNORE INTO pending (id) VALUES (?)", ((i,) for i in ids))

    def pending_orphans(self) -> list[str]:
        return [row[0] for row in self.connection.execute(
            "SELECT id FROM pending WHERE id NOT IN (SELECT id FROM chunks) ORDER BY id"
        )]

    def clear_pending(self, ids: Sequence[str]) -> None:
        with self.connection:
            self.connection.executemany(
                "DELETE FROM pending WHERE id = ? AND id NOT IN (SELECT id FROM chunks)", ((i,) for i in ids)
            )


def remove_index_files(path: Path) -> None:
    """The manifest, its SQLite journal files and the BM25 folder (for `--reset`)."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    lexical.remove_index(lexical.bm25_dir(path))
