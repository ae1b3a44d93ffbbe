"""How hybrid search merges the dense and BM25 lists: the default convex combination against RRF."""

from __future__ import annotations

from retrieval.retriever import convex_fusion, reciprocal_rank_fusion

DENSE = {"lead": 0.85, "both_1": 0.70, "both_2": 0.69}  # cosine; "lead" is far ahead and BM25 missed it
BM25 = {"both_1": 10.0, "both_2": 8.0}


def test_convex_fusion_keeps_a_clear_dense_lead_that_rrf_gives_away() -> None:
    # 0.9 x 0.85 = 0.765 beats 0.9 x 0.70 + 0.1 x 10/10 = 0.730: the gap in cosine counts.
    assert convex_fusion(DENSE, BM25, lexical_weight=0.1) == ["lead", "both_1", "both_2"]
    # RRF sees only ranks: a chunk in both lists passes the top of one list.
    assert reciprocal_rank_fusion([list(DENSE), list(BM25)], k=60) == ["both_1", "both_2", "lead"]


def test_the_lexical_weight_moves_the_order_from_cosine_to_bm25() -> None:
    assert convex_fusion(DENSE, BM25, lexical_weight=0.0) == ["lead", "both_1", "both_2"]
    assert convex_fusion(DENSE, BM25, lexical_weight=1.0)[:2] == ["both_1", "both_2"]
    assert convex_fusion(DENSE, BM25, lexical_weight=0.5) == ["both_1", "both_2", "lead"]


def test_without_lexical_hits_the_order_is_cosine() -> None:
    assert convex_fusion(DENSE, {}, lexical_weight=0.3) == ["lead", "both_1", "both_2"]
