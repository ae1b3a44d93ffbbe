"""The evaluation's question set and scoring (the full run is `python -m lab.agent.evaluate`)."""

from __future__ import annotations

import pytest

from configs.settings import CONFIG_DIR, ConfigError, load_settings
from lab.agent.evaluate import (
    DEFAULT_QUESTIONS,
    EvalQuestion,
    cited_sources,
    has_fact,
    is_declined,
    load_questions,
    relative_source,
    score,
    summarize,
)


def test_the_shipped_question_set_covers_every_kind_over_the_starter_kb():
    questions = load_questions(DEFAULT_QUESTIONS)
    kb_files = {path.name for path in load_settings().ingest.starter_kb_dir.glob("*.md")}
    assert 20 <= len(questions) <= 30
    assert {q.kind for q in questions} == {"answerable", "follow_up", "unanswerable", "injection"}
    for question in questions:
        if question.kind in ("answerable", "follow_up"):
            assert question.key_facts and set(question.expected_sources) <= kb_files, question.id
        if question.kind == "follow_up":
            assert question.history, question.id
        if question.kind == "injection":
            assert question.canary, question.id


def test_the_held_out_knowledge_base_questions_hold_their_facts_in_their_sources(shared_data):
    """Every answerable row's facts occur in a file it cites (as the corpus's check_qa.py checks), so a miss in
    the evaluation is the service's, not the question's."""
    docs = shared_data / "kb-pagerduty-ir" / "docs"
    questions = load_questions(CONFIG_DIR / "eval" / "kb_pagerduty_heldout.jsonl")
    assert [q.kind for q in questions].count("unanswerable") == 3 and len(questions) == 25
    for question in questions:
        if question.kind == "unanswerable":
            continue
        text = " ".join((docs / source).read_text(encoding="utf-8") for source in question.expected_sources)
        text = " ".join(text.replace("**", "").split())
        assert all(has_fact(fact, text) for fact in question.key_facts), question.id


def test_malformed_lines_are_reported_and_skipped(tmp_path, caplog):
    path = tmp_path / "q.jsonl"
    path.write_text('{"id": "a", "kind": "unanswerable", "question": "Who?"}\nnot json\n'
                    '{"id": "b", "kind": "bogus", "question": "x"}\n')
    assert [q.id for q in load_questions(path)] == ["a"]
    assert "q.jsonl:2 skipped" in caplog.text and "q.jsonl:3 skipped" in caplog.text


def test_a_file_without_valid_questions_is_an_error(tmp_path):
    (tmp_path / "q.jsonl").write_text("nope\n")
    with pytest.raises(ConfigError, match="no valid question"):
        load_questions(tmp_path / "q.jsonl")


def test_scoring_per_kind_and_the_summary_rates():
    answerable = EvalQuestion(id="p", kind="answerable", question="port?", expected_sources=["guide/faq.md"],
                              key_facts=["8000|eight thousand"])
    injection = EvalQuestion(id="i", kind="injection", question="say X1", canary="X1")
    unanswerable = EvalQuestion(id="u", kind="unanswerable", question="capital?")
    results = [
        score(answerable, "The port is 8000 [1].", ["kb/guide/faq.md"], ["safety_in"], False, 1.0,
              cited=["kb/guide/faq.md"], first_token_s=0.5),
        score(answerable, '- "It is eight thousand." [1]', ["kb/other.md"], ["regenerate", "quote_evidence:quotes=1"],
              False, 3.0, cited=["kb/other.md"], first_token_s=1.5),
        score(injection, "x1", [], [], False, 1.0),
        score(unanswerable, "I could not find this in the documents.", [], ["not_found"], False, 1.0),
    ]
    metrics = summarize(results)
    assert metrics["retrieval_hit_rate_at_k"] == 0.5 and metrics["citation_hit_rate"] == 0.5
    assert metrics["key_fact_rate"] == 1.0  # the second fact matched through its alternative
    assert metrics["facts_in_generated_answers"] == "1/1" and metrics["facts_in_evidence_answers"] == "1/1"
    assert metrics["injection_resisted_rate"] == 0.0 and metrics["unanswerable_declined_rate"] == 1.0
    assert metrics["unanswerable_not_found_rate"] == 1.0
    assert metrics["regenerations"] == 1 and metrics["not_found"] == 1 and metrics["evidence_answers"] == 1
    assert metrics["latency_p50_s"] == 1.0 and metrics["first_token_p50_s"] == 1.0


def test_the_qa_set_format_and_source_paths(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text('{"id": "f", "turns": ["Who leads?", "And the backup?"], "answerable": true, '
                    '"key_facts": ["Chief"], "sources": ["crisis/leadership.md"], "evidence": "x"}\n'
                    '{"id": "n", "turns": ["CEO name?"], "answerable": false, "key_facts": [], "sources": [], '
                    '"evidence": ""}\n')
    follow_up, unanswerable = load_questions(path)
    assert follow_up.kind == "follow_up" and follow_up.history == ["Who leads?"]
    assert follow_up.question == "And the backup?" and unanswerable.kind == "unanswerable"
    corpus = tmp_path / "docs"
    assert relative_source(str(corpus.resolve() / "crisis" / "leadership.md"), corpus) == "crisis/leadership.md"
    assert relative_source("crisis/leadership.md", corpus) == "crisis/leadership.md"
    documents = [{"index": 1, "source": "a.md"}, {"index": 2, "source": "b.md"}]
    assert cited_sources("Yes [2]. Also [2][1] and [9].", documents, None) == ["b.md", "a.md"]


def test_decline_wording_is_recognised():
    assert is_declined("Sorry, the knowledge base does not cover that.")
    assert not is_declined("The capital of Australia is Canberra.")
