"""BM25 over chunk text: an SQLite FTS5 table in the index file beside the collection.

The ingest writes it in the same SQLite transaction as its manifest, so the lexical index and the
manifest never disagree; the retriever only reads it (a missing file means no lexical hits).
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS lexical_ids (rowid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE)",
    # Porter stemming: "paging" finds "page"; unicode61 folds case and diacritics.
    "CREATE VIRTUAL TABLE IF NOT EXISTS lexical USING fts5(text, tokenize='porter unicode61 remove_diacritics 2')",
)
_TOKEN = re.compile(r"\w+", re.UNICODE)
# Words too common to discriminate; OR-ing them in makes FTS5 score nearly every row.
_STOPWORD_LIST = (
    "a an and are as at be but by can could do does did for from has have how i if in into is it its me my "
    "of on or our should so than that the their them then there these they this to was we were what when "
    "where which who whom why will with would you your"
)
_STOPWORDS = frozenset(_STOPWORD_LIST.split())
_SQL_VARIABLES = 900  # under SQLite's default limit on host parameters per statement


def create_schema(connection: sqlite3.Connection) -> None:
    for statement in SCHEMA:
        connection.execute(statement)


def add_chunks(connection: sqlite3.Connection, rows: Iterable[tuple[str, str]]) -> None:
    """(chunk id, searchable text) rows; call inside the caller's transaction."""
    for chunk_id, text in rows:
        cursor = connection.execute("INSERT OR IGNORE INTO lexical_ids (id) VALUES (?)", (chunk_id,))
        if cursor.rowcount:
            connection.execute("INSERT INTO lexical (rowid, text) VALUES (?, ?)", (cursor.lastrowid, text))


def remove_chunks(connection: sqlite3.Connection, ids: Sequence[str]) -> None:
    for start in range(0, len(ids), _SQL_VARIABLES):
        batch = list(ids[start : start + _SQL_VARIABLES])
        marks = ",".join("?" * len(batch))
        rowids = [row[0] for row in connection.execute(f"SELECT rowid FROM lexical_ids WHERE id IN ({marks})", batch)]
        connection.executemany("DELETE FROM lexical WHERE rowid = ?", [(rowid,) for rowid in rowids])
        connection.execute(f"DELETE FROM lexical_ids WHERE id IN ({marks})", batch)


def match_expression(query: str) -> str | None:
    """The query's distinct content words OR-ed together, each quoted so FTS5 syntax cannot leak in."""
    words = dict.fromkeys(word for word in _TOKEN.findall(query.lower()) if word not in _STOPWORDS)
    return " OR ".join(f'"{word}"' for word in words) or None


class LexicalIndex:
    """Read-only BM25 search over the index file the ingest maintains."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def search(self, query: str, k: int) -> list[str]:
        """Chunk ids, best BM25 first."""
        expression = match_expression(query)
        if expression is None or not self.path.is_file():
            return []
        connection = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            rows = connection.execute(
                "SELECT lexical_ids.id FROM (SELECT rowid, rank FROM lexical WHERE lexical MATCH ? "
                "ORDER BY rank LIMIT ?) AS hits JOIN lexical_ids ON lexical_ids.rowid = hits.rowid "
                "ORDER BY hits.rank",
                (expression, k),
            ).fetchall()
        except sqlite3.OperationalError as exc:  # an index file from before hybrid search: no table yet
            logger.debug("lexical search unavailable in %s: %s", self.path, exc)
            return []
        finally:
            connection.close()
        return [row[0] for row in rows]
