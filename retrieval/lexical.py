"""BM25 over chunk text for hybrid search: a tantivy index beside the manifest, kept equal to it.

The chunk texts live in the manifest's SQLite file (`lexical_chunks`), written in the same transaction
as the manifest, so they never disagree with it; each such transaction also bumps `lexical_state`'s
generation. Search runs on a tantivy index in the folder beside that file (`bm25_dir`): Rust, BM25 with
block-max WAND, so a query stops scoring once no other chunk can enter its top k (SQLite FTS5 scored
every chunk holding any query word: 20-50 ms at 100k chunks, against about 1 ms here).

The tantivy index is derived data. `Bm25Writer.apply` changes it only after the SQLite commit, and
records the generation it holds (a `generation` file written after tantivy's own atomic commit); an
index that is missing or behind (a run killed between the two commits, a store from before tantivy)
is rebuilt from the texts. A reader never blocks on it: a briefly stale index only finds a chunk that
Chroma no longer has (the retriever drops it) or misses a new one.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

import tantivy

logger = logging.getLogger(__name__)

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS lexical_chunks (id TEXT PRIMARY KEY, text TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS lexical_state (generation INTEGER NOT NULL)",
)
_TOKEN = re.compile(r"\w+", re.UNICODE)
# Words too common to discriminate: BM25 gives them almost no weight, and they only cost matching.
_STOPWORD_LIST = (
    "a an and are as at be but by can could do does did for from has have how i if in into is it its me my "
    "of on or our should so than that the their them then there these they this to was we were what when "
    "where which who whom why will with would you your"
)
_STOPWORDS = frozenset(_STOPWORD_LIST.split())
_SQL_VARIABLES = 900  # under SQLite's default limit on host parameters per statement
_GENERATION_FILE = "generation"
_WRITER_HEAP = 32_000_000  # bytes tantivy buffers before it writes a segment
_ANALYZER = "words"


def bm25_dir(index_file: Path) -> Path:
    """The tantivy index folder beside the manifest file."""
    return index_file.with_name(index_file.name + ".bm25")


def _open_index(directory: Path) -> tantivy.Index:
    """The index in `directory` (created empty when there is none), with its text analyzer registered."""
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("id", stored=True, tokenizer_name="raw")  # exact ids, for deletes and results
    builder.add_text_field("text", stored=False, tokenizer_name=_ANALYZER)
    index = tantivy.Index(builder.build(), path=str(directory))
    # Words of letters and digits, lower case, diacritics folded, English (Snowball) stems: "paging" finds
    # "page", "café" finds "cafe"; tokens over 40 characters (hashes, base64) are dropped.
    analyzer = (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(40))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.ascii_fold())
        .filter(tantivy.Filter.stemmer("english"))
        .build()
    )
    index.register_tokenizer(_ANALYZER, analyzer)
    return index


def create_schema(connection: sqlite3.Connection) -> None:
    """Tables of the lexical texts; a file from the FTS5 era moves its texts over."""
    for statement in SCHEMA:
        connection.execute(statement)
    if connection.execute("SELECT count(*) FROM lexical_state").fetchone()[0] == 0:
        connection.execute("INSERT INTO lexical_state (generation) VALUES (0)")
    if connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'lexical_ids'").fetchone() is not None:
        connection.execute(
            "INSERT OR IGNORE INTO lexical_chunks (id, text) "
            "SELECT lexical_ids.id, lexical.text FROM lexical_ids JOIN lexical ON lexical.rowid = lexical_ids.rowid"
        )
        for table in ("lexical", "lexical_ids", "lexical_terms"):
            connection.execute(f"DROP TABLE IF EXISTS {table}")
        bump_generation(connection)


def add_chunks(connection: sqlite3.Connection, rows: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """(chunk id, searchable text) rows; call inside the caller's transaction. Returns the rows new here."""
    added = []
    for chunk_id, text in rows:
        if connection.execute("INSERT OR IGNORE INTO lexical_chunks (id, text) VALUES (?, ?)", (chunk_id, text)).rowcount:
            added.append((chunk_id, text))
    return added


def remove_chunks(connection: sqlite3.Connection, ids: Sequence[str]) -> None:
    for start in range(0, len(ids), _SQL_VARIABLES):
        batch = list(ids[start : start + _SQL_VARIABLES])
        connection.execute(f"DELETE FROM lexical_chunks WHERE id IN ({','.join('?' * len(batch))})", batch)


def bump_generation(connection: sqlite3.Connection) -> int:
    """Inside the transaction that changed the texts: the generation the tantivy index must reach."""
    connection.execute("UPDATE lexical_state SET generation = generation + 1")
    return generation(connection)


def generation(connection: sqlite3.Connection) -> int:
    return connection.execute("SELECT generation FROM lexical_state").fetchone()[0]


class Bm25Writer:
    """Brings the tantivy index to the manifest's texts; used by the ingest, after each SQLite commit."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def held_generation(self) -> int | None:
        """The generation the index committed, or None when there is no usable index."""
        try:
            return int((self.directory / _GENERATION_FILE).read_text())
        except (FileNotFoundError, ValueError):
            return None

    def ensure(self, connection: sqlite3.Connection) -> None:
        """Rebuild the index when it is missing or behind the texts."""
        if self.held_generation() != generation(connection):
            self.rebuild(connection)

    def apply(
        self, connection: sqlite3.Connection, added: Sequence[tuple[str, str]], removed: Sequence[str], target: int
    ) -> None:
        """Carry one committed transaction (generation `target`) over; rebuild if the index was not just behind it."""
        if self.held_generation() != target - 1:
            self.rebuild(connection)
            return
        writer = self._writer()
        for chunk_id in removed:
            writer.delete_documents_by_term("id", chunk_id)
        for chunk_id, text in added:
            writer.add_document(tantivy.Document(id=chunk_id, text=text))
        self._commit(writer, target)

    def rebuild(self, connection: sqlite3.Connection) -> None:
        logger.info("rebuilding the BM25 index at %s from the manifest", self.directory)
        (self.directory / _GENERATION_FILE).unlink(missing_ok=True)
        writer = self._writer()
        writer.delete_all_documents()
        for chunk_id, text in connection.execute("SELECT id, text FROM lexical_chunks"):
            writer.add_document(tantivy.Document(id=chunk_id, text=text))
        self._commit(writer, generation(connection))

    def _writer(self) -> tantivy.IndexWriter:
        self.directory.mkdir(parents=True, exist_ok=True)
        return _open_index(self.directory).writer(heap_size=_WRITER_HEAP, num_threads=1)

    def _commit(self, writer: tantivy.IndexWriter, target: int) -> None:
        writer.commit()
        writer.wait_merging_threads()  # releases the writer lock
        scratch = self.directory / f"{_GENERATION_FILE}.tmp"
        scratch.write_text(str(target))
        os.replace(scratch, self.directory / _GENERATION_FILE)  # atomic: the old number or the new


def remove_index(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def query_words(query: str) -> list[str]:
    """The query's distinct content words, in order (only letters, digits and _: no query syntax)."""
    return list(dict.fromkeys(word for word in _TOKEN.findall(query.lower()) if word not in _STOPWORDS))


class LexicalIndex:
    """Read-only BM25 search over the tantivy index the ingest maintains."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._index: tantivy.Index | None = None

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        """(chunk id, BM25 score), best first (any query word may match: a disjunction)."""
        words = query_words(query)
        index = self._open()
        if not words or index is None:
            return []
        index.reload()  # sees the ingest's latest commit (about 30 us when nothing changed)
        searcher = index.searcher()
        hits = searcher.search(index.parse_query(" ".join(words), ["text"]), k).hits
        return [(searcher.doc(address)["id"][0], float(score)) for score, address in hits]

    def _open(self) -> tantivy.Index | None:
        # The generation file appears after the first commit: before it there is no index to open.
        if self._index is None and (self.directory / _GENERATION_FILE).is_file():
            self._index = _open_index(self.directory)
        return self._index
