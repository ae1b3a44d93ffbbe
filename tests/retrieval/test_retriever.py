"""Retriever.search on real MiniLM embeddings and a real Chroma collection."""

from __future__ import annotations

import numpy as np
import pytest

from configs.settings import AppSettings, RetrievalSettings
from retrieval.lexical import LexicalIndex, bm25_dir
from retrieval.retriever import RetrievedChunk, Retriever, build_retriever
from retrieval.store import index_path
from tests.retrieval.conftest import write_lexical

pytestmark = pytest.mark.slow

FACTS = {
    "volcano": "Mount Kerrick erupted in 1883 and its ash cloud circled the globe twice.",
    "bakery": "The bakery on Elm Street sells sourdough loaves every morning at seven.",
    "chess": "Castling moves the king two squares towards a rook, which jumps over it.",
    "violin": "A violin has four strings tuned in perfect fifths: G, D, A and E.",
}


@pytest.fixture
def retriever(store_settings: AppSettings) -> Retriever:
    retriever = build_retriever(store_settings)
    retriever.store.add_texts(
        list(FACTS.values()), metadatas=[{"source": f"{name}.txt"} for name in FACTS], ids=list(FACTS)
    )
    return retriever


def test_finds_the_relevant_chunk_first(retriever: Retriever) -> None:
    best = retriever.search("When did the volcano erupt?")[0]
    assert isinstance(best, RetrievedChunk)
    assert (best.id, best.source, best.text) == ("volcano", "volcano.txt", FACTS["volcano"])
    assert best.metadata == {"source": "volcano.txt"}


def test_scores_are_cosine_similarities_sorted_high_to_low(retriever: Retriever) -> None:
    query = "How many strings does a violin have?"
    hits = retriever.search(query, k=4)
    embeddings = retriever.store.embeddings
    query_vector = np.array(embeddings.embed_query(query))
    for hit in hits:
        expected = float(query_vector @ np.array(embeddings.embed_documents([hit.text])[0]))
        assert hit.score == pytest.approx(expected, abs=1e-4)
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
    assert hits[0].id == "violin"


def test_k_defaults_to_top_k_and_min_relevance_drops_weak_chunks(retriever: Retriever) -> None:
    permissive = Retriever(retriever.store, RetrievalSettings(top_k=2, min_relevance=0.0))
    hits = permissive.search("sourdough bread in the morning")
    assert len(hits) == 2 and hits[0].id == "bakery"
    assert len(permissive.search("sourdough bread in the morning", k=1)) == 1

    floor = (hits[0].score + hits[1].score) / 2
    strict = Retriever(retriever.store, RetrievalSettings(top_k=2, min_relevance=floor))
    assert [hit.id for hit in strict.search("sourdough bread in the morning")] == ["bakery"]


@pytest.mark.parametrize("query", ["", "   \n\t"])
def test_empty_query_is_rejected(retriever: Retriever, query: str) -> None:
    with pytest.raises(ValueError, match="query is empty"):
        retriever.search(query)


def test_search_on_an_empty_store_returns_nothing(store_settings: AppSettings) -> None:
    assert build_retriever(store_settings).search("anything at all") == []


@pytest.fixture
def hybrid_retriever(retriever: Retriever, store_settings: AppSettings) -> Retriever:
    """The FACTS store plus a chunk only an exact number finds, all in the BM25 index too; pools of 2."""
    retriever.store.add_texts([PROXY], metadatas=[{"source": "proxy.txt"}], ids=["proxy"])
    write_lexical(index_path(store_settings), {**FACTS, "proxy": PROXY}).close()
    settings = RetrievalSettings(fetch_k=2, min_relevance=0.0)
    return Retriever(retriever.store, settings, LexicalIndex(bm25_dir(index_path(store_settings))))


PROXY = "Status 7731 is returned when the upstream proxy gives up."


@pytest.mark.parametrize("fusion", ["convex", "rrf"])
def test_hybrid_reads_in_a_chunk_only_bm25_found(hybrid_retriever: Retriever, fusion: str) -> None:
    # Weight enough on BM25 that its exact-number hit enters the top 2 under the convex fusion too.
    hybrid_retriever.settings = hybrid_retriever.settings.model_copy(update={"fusion": fusion, "lexical_weight": 0.5})
    dense = hybrid_retriever.search("Kerrick 7731", k=2, hybrid=False)
    assert [hit.id for hit in dense] == ["volcano", "violin"]  # the proxy chunk is not among dense's 2
    hybrid = hybrid_retriever.search("Kerrick 7731", k=2, hybrid=True)
    assert [hit.id for hit in hybrid] == ["volcano", "proxy"]  # BM25 ranks it first: read from Chroma
    proxy = hybrid[1]
    assert (proxy.source, proxy.text, proxy.citation) == ("proxy.txt", PROXY, "proxy.txt")
    query_vector = np.array(hybrid_retriever.store.embeddings.embed_query("Kerrick 7731"))
    expected = float(query_vector @ np.array(hybrid_retriever.store.embeddings.embed_documents([PROXY])[0]))
    assert proxy.score == pytest.approx(expected, abs=1e-4)  # scored by cosine like the dense hits


def test_a_lexical_hit_outside_the_filter_stays_out(hybrid_retriever: Retriever) -> None:
    hits = hybrid_retriever.search("sourdough loaves and violin strings", k=2, where={"source": "violin.txt"})
    assert [hit.id for hit in hits] == ["violin"]


def test_adjacent_reads_the_next_chunk_of_each_file_in_order(store_settings: AppSettings) -> None:
    retriever = build_retriever(store_settings)
    parts = {("guide.md", 0): "Before you can lead, meet the following criteria.",
             ("guide.md", 1): "* Has joined at least two major incident calls.",
             ("guide.md", 2): "## Responsibilities",
             ("faq.md", 0): "Who can lead? Anyone trained.", ("faq.md", 1): "Training takes a week."}
    retriever.store.add_texts(list(parts.values()), ids=[f"{s}#{i}" for s, i in parts],
                              metadatas=[{"source": s, "chunk_index": i} for s, i in parts])

    followers = retriever.adjacent(["faq.md#0", "guide.md#0", "guide.md#2"])  # the last chunk has none

    assert [(c.id, c.source, c.text, c.score) for c in followers] == [
        ("faq.md#1", "faq.md", "Training takes a week.", 0.0),
        ("guide.md#1", "guide.md", "* Has joined at least two major incident calls.", 0.0),
    ]
    assert [c.id for c in retriever.adjacent(["guide.md#0", "guide.md#1"])] == ["guide.md#2"]  # none repeated
    assert retriever.adjacent([]) == [] and retriever.adjacent(["unknown"]) == []


def test_adjacent_reads_back_within_a_section_when_asked(store_settings: AppSettings) -> None:
    retriever = build_retriever(store_settings)
    parts = [("Usually every hour or so is what we recommend.", "Handovers"),
             ("After handing over, leave the call.", "Handovers"),
             ("Roles grow with the incident.", "Roles")]
    retriever.store.add_texts([text for text, _ in parts], ids=[f"c.md#{i}" for i in range(3)],
                              metadatas=[{"source": "c.md", "chunk_index": i, "heading": heading}
                                         for i, (_, heading) in enumerate(parts)])

    assert [c.id for c in retriever.adjacent(["c.md#1", "c.md#2"], -1)] == ["c.md#0"]  # c.md#1 is asked for
    assert [c.id for c in retriever.adjacent(["c.md#1"], -1, same_section=True)] == ["c.md#0"]
    assert retriever.adjacent(["c.md#2"], -1, same_section=True) == []  # another section's end
    assert retriever.adjacent(["c.md#0"], -1) == []  # the file's first chunk
    retriever.store.add_texts(["Plain text, first part.", "Plain text, second part."], ids=["p.txt#0", "p.txt#1"],
                              metadatas=[{"source": "p.txt", "chunk_index": i} for i in range(2)])
    assert retriever.adjacent(["p.txt#1"], -1, same_section=True) == []  # no headings: no known section
