"""The BM25 index: tantivy following the manifest's texts, rebuilt when behind, and its search (fast)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from retrieval import lexical
from retrieval.lexical import Bm25Writer, LexicalIndex, bm25_dir
from tests.retrieval.conftest import bm25_ids, write_lexical

# "incident" is in four chunks, "pager" in three, "escalation" and "webhook" in one each.
CHUNKS = {
    "a": "Incident commanders page the pager rotation during an incident.",
    "b": "Every incident gets a pager alert and a Slack channel.",
    "c": "Incident escalation policies decide who is paged next.",
    "d": "Incidents can post to a webhook; the pager is optional.",
    "e": "Le café du coin ferme à minuit.",
}


def ids(hits: list[tuple[str, float]]) -> list[str]:
    return [chunk_id for chunk_id, _ in hits]


def test_the_index_follows_adds_and_removes(tmp_path: Path) -> None:
    index_file = tmp_path / "index.sqlite"
    connection = write_lexical(index_file, CHUNKS)
    assert bm25_ids(index_file) == set(CHUNKS)
    writer = Bm25Writer(bm25_dir(index_file))
    with connection:
        lexical.remove_chunks(connection, ["d", "b"])
        added = lexical.add_chunks(connection, [("a", CHUNKS["a"]), ("f", "A new webhook chunk.")])
        target = lexical.bump_generation(connection)
    assert added == [("f", "A new webhook chunk.")]  # "a" was there already
    writer.apply(connection, added, ["d", "b"], target)
    assert bm25_ids(index_file) == {"a", "c", "e", "f"}
    assert writer.held_generation() == lexical.generation(connection)
    assert ids(LexicalIndex(bm25_dir(index_file)).search("webhook", 4)) == ["f"]


def test_an_index_left_behind_is_rebuilt_from_the_texts(tmp_path: Path) -> None:
    index_file = tmp_path / "index.sqlite"
    connection = write_lexical(index_file, CHUNKS)
    with connection:  # a run killed after its SQLite commit, before tantivy followed
        lexical.remove_chunks(connection, ["a"])
        lexical.bump_generation(connection)
    writer = Bm25Writer(bm25_dir(index_file))
    assert bm25_ids(index_file) == set(CHUNKS)
    writer.ensure(connection)
    assert bm25_ids(index_file) == {"b", "c", "d", "e"}
    with connection:  # the next change finds the index one generation behind it, or rebuilds
        lexical.remove_chunks(connection, ["b"])
        lexical.bump_generation(connection)
        target = lexical.bump_generation(connection)
    writer.apply(connection, [], ["b"], target)
    assert bm25_ids(index_file) == {"c", "d", "e"}


def test_a_file_from_the_fts5_era_moves_its_texts_over(tmp_path: Path) -> None:
    index_file = tmp_path / "index.sqlite"
    connection = sqlite3.connect(index_file)
    with connection:
        connection.execute("CREATE TABLE lexical_ids (rowid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE)")
        connection.execute("CREATE VIRTUAL TABLE lexical USING fts5(text)")
        connection.execute("CREATE TABLE lexical_terms (term TEXT PRIMARY KEY, df INTEGER NOT NULL)")
        for rowid, (chunk_id, text) in enumerate(CHUNKS.items(), start=1):
            connection.execute("INSERT INTO lexical_ids (rowid, id) VALUES (?, ?)", (rowid, chunk_id))
            connection.execute("INSERT INTO lexical (rowid, text) VALUES (?, ?)", (rowid, text))
    with connection:
        lexical.create_schema(connection)
    Bm25Writer(bm25_dir(index_file)).ensure(connection)
    assert dict(connection.execute("SELECT id, text FROM lexical_chunks")) == CHUNKS
    assert connection.execute("SELECT 1 FROM sqlite_master WHERE name LIKE 'lexical_ids%'").fetchone() is None
    assert bm25_ids(index_file) == set(CHUNKS)


def test_search_ranks_by_bm25(tmp_path: Path) -> None:
    write_lexical(tmp_path / "index.sqlite", CHUNKS).close()
    index = LexicalIndex(bm25_dir(tmp_path / "index.sqlite"))
    hits = index.search("incident escalation", 4)
    assert hits[0][0] == "c"  # the rare word outweighs the common one
    assert [score for _, score in hits] == sorted((score for _, score in hits), reverse=True) and hits[-1][1] > 0
    assert set(ids(index.search("incidents", 4))) == {"a", "b", "c", "d"}  # stemmed: "incident" found in each
    assert ids(index.search("CAFE", 4)) == ["e"]  # case and diacritics folded
    assert ids(index.search("paging the pager for an incident webhook", 4))[0] == "d"
    assert index.search("the and of", 4) == []  # nothing but stop words
    assert LexicalIndex(tmp_path / "missing.bm25").search("incident", 4) == []


@pytest.mark.parametrize(
    "query", ['"webhook" OR NEAR(', "webhook*", "text:webhook", "-webhook", "foo_bar webhooks", "webhook AND ___"]
)
def test_query_syntax_in_the_question_is_searched_as_words(tmp_path: Path, query: str) -> None:
    write_lexical(tmp_path / "index.sqlite", CHUNKS).close()
    assert ids(LexicalIndex(bm25_dir(tmp_path / "index.sqlite")).search(query, 4)) == ["d"]
