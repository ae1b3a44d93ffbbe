"""BM25 over chunk text: an SQLite FTS5 table in the index file beside the collection.

The ingest writes it in the same SQLite transaction as its manifest, so the lexical index and the
manifest never disagree; the retriever only reads it (a missing file means no lexical hits).

FTS5 scores every row that matches any word of an OR query, so a word found in half the chunks costs
half the index per query (1.9 s p95 at 100k chunks). A `lexical_terms` table keeps each stem's
document frequency, so a search keeps only the words that can discriminate: it drops stems found in
more than `max_df` of the chunks (FTS5's BM25 gives those an IDF of nearly 0 anyway) and takes the
rest rarest first while their postings fit `max_postings`, which bounds the rows scored per query.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

# Porter stemming: "paging" finds "page"; unicode61 folds case and diacritics.
_TOKENIZER = "porter unicode61 remove_diacritics 2"
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS lexical_ids (rowid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE)",
    f"CREATE VIRTUAL TABLE IF NOT EXISTS lexical USING fts5(text, tokenize='{_TOKENIZER}')",
)
_TERMS_TABLE = "CREATE TABLE lexical_terms (term TEXT PRIMARY KEY, df INTEGER NOT NULL) WITHOUT ROWID"
_TOKEN = re.compile(r"\w+", re.UNICODE)
# Words too common to discriminate; OR-ing them in makes FTS5 score nearly every row.
_STOPWORD_LIST = (
    "a an and are as at be but by can could do does did for from has have how i if in into is it its me my "
    "of on or our should so than that the their them then there these they this to was we were what when "
    "where which who whom why will with would you your"
)
_STOPWORDS = frozenset(_STOPWORD_LIST.split())
_SQL_VARIABLES = 900  # under SQLite's default limit on host parameters per statement
_BACKFILL_BATCH = 2000


def create_schema(connection: sqlite3.Connection) -> None:
    """Tables of the lexical index; an index written before `lexical_terms` existed gets it filled."""
    for statement in SCHEMA:
        connection.execute(statement)
    if connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'lexical_terms'").fetchone() is None:
        connection.execute(_TERMS_TABLE)
        last = 0
        while batch := connection.execute(
            "SELECT rowid, text FROM lexical WHERE rowid > ? ORDER BY rowid LIMIT ?", (last, _BACKFILL_BATCH)
        ).fetchall():
            _count_terms(connection, [text for _, text in batch], +1)
            last = batch[-1][0]


def add_chunks(connection: sqlite3.Connection, rows: Iterable[tuple[str, str]]) -> None:
    """(chunk id, searchable text) rows; call inside the caller's transaction."""
    added: list[str] = []
    for chunk_id, text in rows:
        cursor = connection.execute("INSERT OR IGNORE INTO lexical_ids (id) VALUES (?)", (chunk_id,))
        if cursor.rowcount:
            connection.execute("INSERT INTO lexical (rowid, text) VALUES (?, ?)", (cursor.lastrowid, text))
            added.append(text)
    _count_terms(connection, added, +1)


def remove_chunks(connection: sqlite3.Connection, ids: Sequence[str]) -> None:
    for start in range(0, len(ids), _SQL_VARIABLES):
        batch = list(ids[start : start + _SQL_VARIABLES])
        marks = ",".join("?" * len(batch))
        rowids = [
            row[0]
            for row in connection.execute(f"SELECT rowid FROM lexical_ids WHERE id IN ({marks})", batch)
        ]
        if rowids:
            texts = connection.execute(
                f"SELECT text FROM lexical WHERE rowid IN ({','.join('?' * len(rowids))})", rowids
            ).fetchall()
            _count_terms(connection, [text for (text,) in texts], -1)
        connection.executemany("DELETE FROM lexical WHERE rowid = ?", [(rowid,) for rowid in rowids])
        connection.execute(f"DELETE FROM lexical_ids WHERE id IN ({marks})", batch)


def _count_terms(connection: sqlite3.Connection, texts: Sequence[str], sign: int) -> None:
    """Add (or, with sign -1, take back) the texts' stems to the document frequencies."""
    if not texts:
        return
    frequencies = _scratch(connection, texts, "SELECT term, doc FROM temp.lexical_scratch_rows")
    connection.executemany(
        "INSERT INTO lexical_terms (term, df) VALUES (?, ?) ON CONFLICT (term) DO UPDATE SET df = df + excluded.df",
        ((term, sign * count) for term, count in frequencies),
    )
    if sign < 0:
        connection.execute("DELETE FROM lexical_terms WHERE df <= 0")


def _stems(connection: sqlite3.Connection, texts: Sequence[str]) -> list[dict[int, str]]:
    """Each text's tokens as the index cuts them: {position: stem}, one dict per text."""
    stems: list[dict[int, str]] = [{} for _ in texts]
    for term, doc, offset in _scratch(
        connection, texts, "SELECT term, doc, offset FROM temp.lexical_scratch_tokens"
    ):
        stems[doc - 1][offset] = term
    return stems


def _scratch(connection: sqlite3.Connection, texts: Sequence[str], select: str) -> list[tuple]:
    """Run `select` over the texts put in a scratch FTS5 table of the connection's temp schema (never
    written to the file): its vocabulary views give the index's own stems, with no second stemmer to
    drift from it. Rows are numbered from 1 in the order of `texts`."""
    connection.execute(
        f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.lexical_scratch USING fts5(text, tokenize='{_TOKENIZER}')"
    )
    for view, kind in (("lexical_scratch_rows", "row"), ("lexical_scratch_tokens", "instance")):
        connection.execute(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.{view} USING fts5vocab(temp, lexical_scratch, {kind})"
        )
    connection.execute("DELETE FROM temp.lexical_scratch")
    connection.executemany(
        "INSERT INTO temp.lexical_scratch (rowid, text) VALUES (?, ?)", enumerate(texts, start=1)
    )
    rows = connection.execute(select).fetchall()
    connection.execute("DELETE FROM temp.lexical_scratch")
    return rows


def query_words(query: str) -> list[str]:
    """The query's distinct content words, in order."""
    return list(dict.fromkeys(word for word in _TOKEN.findall(query.lower()) if word not in _STOPWORDS))


def select_words(frequencies: dict[str, int], total: int, *, max_df: float, max_postings: int) -> list[str]:
    """The words worth searching: found, in at most `max_df` of the chunks, rarest first within `max_postings`."""
    chosen: list[str] = []
    postings = 0
    for word, df in sorted(frequencies.items(), key=lambda item: item[1]):
        if df == 0 or df > max_df * total:
            continue
        if chosen and postings + df > max_postings:
            break
        chosen.append(word)
        postings += df
    return chosen


class LexicalIndex:
    """Read-only BM25 search over the index file the ingest maintains."""

    def __init__(self, path: Path, *, max_df: float = 0.5, max_postings: int = 20_000) -> None:
        self.path = path
        self.max_df = max_df
        self.max_postings = max_postings

    def search(self, query: str, k: int) -> list[str]:
        """Chunk ids, best BM25 first."""
        words = query_words(query)
        if not words or not self.path.is_file():
            return []
        connection = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            chosen = self._choose(connection, words)
            if not chosen:
                return []
            rows = connection.execute(
                "SELECT lexical_ids.id FROM (SELECT rowid, rank FROM lexical WHERE lexical MATCH ? "
                "ORDER BY rank LIMIT ?) AS hits JOIN lexical_ids ON lexical_ids.rowid = hits.rowid "
                "ORDER BY hits.rank",
                # Each word quoted, so FTS5 query syntax in the question cannot leak in.
                (" OR ".join(f'"{word}"' for word in chosen), k),
            ).fetchall()
        except sqlite3.OperationalError as exc:  # an index file from before hybrid search: no table yet
            logger.debug("lexical search unavailable in %s: %s", self.path, exc)
            return []
        finally:
            connection.close()
        return [row[0] for row in rows]

    def _choose(self, connection: sqlite3.Connection, words: list[str]) -> list[str]:
        # A word FTS5 cuts in two ("foo_bar") is a phrase: its rarer part bounds its hits, the commoner its cost.
        stems = _stems(connection, words)
        wanted = sorted({stem for tokens in stems for stem in tokens.values()})
        found: dict[str, int] = {}
        for start in range(0, len(wanted), _SQL_VARIABLES):
            batch = wanted[start : start + _SQL_VARIABLES]
            found.update(
                connection.execute(
                    f"SELECT term, df FROM lexical_terms WHERE term IN ({','.join('?' * len(batch))})", batch
                ).fetchall()
            )
        frequencies = {
            word: max((found.get(stem, 0) for stem in tokens.values()), default=0)
            for word, tokens in zip(words, stems, strict=True)
        }
        total = connection.execute("SELECT count(*) FROM lexical_ids").fetchone()[0]
        chosen = select_words(frequencies, total, max_df=self.max_df, max_postings=self.max_postings)
        logger.debug("lexical words %s of %s (document frequencies %s)", chosen, words, frequencies)
        return chosen
