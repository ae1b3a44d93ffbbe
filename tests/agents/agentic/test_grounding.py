"""The grounding check on the real MiniLM embeddings."""

from __future__ import annotations

from agents.agentic.grounding import GroundingChecker
from agents.state import ContextDocument
from configs.settings import AgenticSettings

DOCS = [
    ContextDocument(index=1, id="a", source="faq.md", title="FAQ", score=0.7,
                    text="Start the service with python -m api --port 9000, or set api.port. The default port is 8000."),
    ContextDocument(index=2, id="b", source="ingest.md", title="Ingest", score=0.6,
                    text="Documents are cut into passages of at most 800 characters with 120 characters of overlap."),
]


def checker(embeddings) -> GroundingChecker:
    return GroundingChecker(embeddings, AgenticSettings())


def test_an_answer_restating_its_cited_chunks_is_grounded(embeddings):
    report = checker(embeddings).check(
        "The default port of the service is 8000 [1]. Passages are at most 800 characters long [2].", DOCS)
    assert report.grounded and (report.supported, report.claims) == (2, 2)


def test_an_answer_on_topic_with_a_wrong_number_is_not_grounded(embeddings):
    report = checker(embeddings).check("The default port of the service is 5672 [1].", DOCS)
    assert not report.grounded and report.supported == 0


def test_an_answer_about_something_else_is_not_grounded(embeddings):
    report = checker(embeddings).check("Bananas are a yellow fruit grown in many tropical countries.", DOCS)
    assert not report.grounded


def test_a_sentence_is_checked_against_the_chunk_it_cites(embeddings):
    # True of document 2, but it cites document 1.
    report = checker(embeddings).check("Documents are cut into passages of at most 800 characters [1].", DOCS)
    assert report.supported == 0


def test_citing_a_source_that_does_not_exist_fails(embeddings):
    report = checker(embeddings).check("The default port is 8000 [3].", DOCS)
    assert report.invalid_citations == [3] and not report.grounded
