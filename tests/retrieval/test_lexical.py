"""The BM25 index's document frequencies and the choice of query words they drive (SQLite only, fast)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from retrieval import lexical
from retrieval.lexical import LexicalIndex, select_words
from tests.retrieval.conftest import document_frequencies

# "incident" is in every chunk, "pager" in most, "escalation" and "webhook" in one each.
CHUNKS = {
    "a": "Incident commanders page the pager rotation during an incident.",
    "b": "Every incident gets a pager alert and a Slack channel.",
    "c": "Incident escalation policies decide who is paged next.",
    "d": "Incidents can post to a webhook; the pager is optional.",
}


def build_index(path: Path, chunks: dict[str, str]) -> sqlite3.Connection:
    connection = sqlite3.connect(path)
    with connection:
        lexical.create_schema(connection)
        lexical.add_chunks(connection, chunks.items())
    return connection


def test_document_frequencies_follow_adds_and_removes(tmp_path: Path) -> None:
    connection = build_index(tmp_path / "index.sqlite", CHUNKS)
    terms = dict(connection.execute("SELECT term, df FROM lexical_terms"))
    assert (
        terms["incid"] == 4 and terms["pager"] == 3 and terms["webhook"] == 1
    )  # porter stems, as FTS5 has them
    assert terms == document_frequencies(connection)

    with connection:
        lexical.remove_chunks(connection, ["d", "b"])
        lexical.add_chunks(connection, [("a", CHUNKS["a"])])  # already there: counted once
    terms = dict(connection.execute("SELECT term, df FROM lexical_terms"))
    assert terms == document_frequencies(connection)
    assert terms["incid"] == 2 and "webhook" not in terms


def test_an_index_from_before_the_counts_gets_them_on_open(tmp_path: Path) -> None:
    connection = build_index(tmp_path / "index.sqlite", CHUNKS)
    with connection:
        connection.execute("DROP TABLE lexical_terms")
        lexical.create_schema(connection)
    assert dict(connection.execute("SELECT term, df FROM lexical_terms")) == document_frequencies(connection)


def test_select_words_drops_common_words_and_takes_rare_ones_first_within_the_budget() -> None:
    frequencies = {"incident": 90, "pager": 40, "escalation": 5, "webhook": 2, "missing": 0}
    assert select_words(frequencies, 100, max_df=0.5, max_postings=1000) == ["webhook", "escalation", "pager"]
    assert select_words(frequencies, 100, max_df=0.5, max_postings=10) == ["webhook", "escalation"]
    assert select_words(frequencies, 100, max_df=0.5, max_postings=1) == ["webhook"]  # the rarest always
    assert select_words({"incident": 90}, 100, max_df=0.5, max_postings=1000) == []


def test_search_ranks_by_the_discriminating_words(tmp_path: Path) -> None:
    build_index(tmp_path / "index.sqlite", CHUNKS).close()
    index = LexicalIndex(tmp_path / "index.sqlite", max_df=0.5, max_postings=1000)
    assert index.search("incident escalation", 4) == ["c"]  # "incident" is in every chunk: left out
    assert index.search("incidents", 4) == []  # nothing but a word in every chunk: no lexical opinion
    assert index.search("paging the pager for an incident webhook", 4)[0] == "d"
    assert LexicalIndex(tmp_path / "missing.sqlite").search("incident", 4) == []


@pytest.mark.parametrize(
    "query", ['"webhook" OR NEAR(', "webhook*", "text:webhook", "-webhook", "foo_bar webhooks"]
)
def test_fts5_syntax_in_the_question_is_searched_as_words(tmp_path: Path, query: str) -> None:
    build_index(tmp_path / "index.sqlite", CHUNKS).close()
    assert LexicalIndex(tmp_path / "index.sqlite").search(query, 4) == ["d"]
