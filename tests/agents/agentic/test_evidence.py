"""Evidence selection: Markdown cleaned into sentences, ranked by the real MiniLM plus term overlap."""

from __future__ import annotations

from agents.agentic.evidence import (
    EvidenceRanker,
    Passage,
    excerpts,
    format_quotes,
    select_quotes,
    split_sentences,
)
from agents.state import ContextDocument
from configs.settings import AgenticSettings


def doc(index: int, text: str) -> ContextDocument:
    return ContextDocument(index=index, id=f"c{index}", source=f"d{index}.md", title="T", score=0.5, text=text)


def passage(index: int, text: str, score: float, position: int = 0) -> Passage:
    return Passage(index=index, position=position, text=text, score=score)


def test_markdown_becomes_plain_sentences():
    text = ('Intro here. ### Roles The **Scribe** keeps the [timeline](http://x){:target="_blank"}.\n'
            "| SEV-4 | Minor issue |\n|---|---|\n* Page them with `!ic page` in Slack.")
    assert split_sentences(text) == ["Intro here.", "Roles The Scribe keeps the timeline.", "SEV-4 | Minor issue",
                                     "Page them with `!ic page` in Slack."]


def test_the_sentence_that_answers_ranks_first_and_quotes_carry_their_citation(embeddings):
    ranker = EvidenceRanker(embeddings, AgenticSettings())
    documents = [doc(1, "Bananas grow in tropical countries all year round. The cafeteria opens at noon."),
                 doc(2, "Escalation policies notify the next person in line. We recommend you set your "
                        "escalation timeout to 5 minutes. Schedules rotate weekly.")]
    passages = ranker.rank("How long should we wait before a page escalates?", documents)
    assert passages[0]["text"] == "We recommend you set your escalation timeout to 5 minutes."
    assert passages[0]["index"] == 2
    quoted = format_quotes("Closest passages:", select_quotes(passages, 3))
    assert quoted.splitlines()[:2] == ["Closest passages:",
                                       '- "We recommend you set your escalation timeout to 5 minutes." [2]']
    assert "Bananas" not in quoted


def test_a_question_asking_for_a_quantity_prefers_a_sentence_that_states_one(embeddings):
    documents = [doc(1, "Status reports tell the room the current state of every monitored system. "
                        "The stalking bot reports the state of the system every 30s.")]
    question = "How often does the stalking bot report the system state?"
    plain = EvidenceRanker(embeddings, AgenticSettings(evidence_quantity_bonus=0.0)).rank(question, documents)
    typed = EvidenceRanker(embeddings, AgenticSettings()).rank(question, documents)
    before = {p["text"]: p["score"] for p in plain}
    gain = {t["text"]: round(t["score"] - before[t["text"]], 4) for t in typed}
    assert gain == {"Status reports tell the room the current state of every monitored system.": 0.0,
                    "The stalking bot reports the state of the system every 30s.": 0.2}
    assert typed[0]["text"].endswith("every 30s.")


def test_quotes_stop_at_weak_or_repeated_sentences():
    passages = [passage(1, "The escalation timeout is five minutes long.", 0.9),
                passage(2, "The escalation timeout is five minutes long!", 0.88),  # the corpus retelling itself
                passage(1, "Schedules rotate every week on Monday.", 0.8),
                passage(3, "Unrelated words about lunch menus today.", 0.3)]
    assert [p["text"] for p in select_quotes(passages, 3)] == [passages[0]["text"], passages[2]["text"]]
    assert len(select_quotes(passages, 1)) == 1


def test_excerpts_keep_each_documents_best_sentences_in_their_order():
    documents = [doc(1, "A first. B second. C third.")]
    passages = [passage(1, "C third.", 0.9, 2), passage(1, "A first.", 0.8, 0), passage(1, "B second.", 0.1, 1)]
    assert excerpts(documents, passages, 2)[0]["text"] == "A first. C third."
    assert excerpts(documents, passages, 0)[0]["text"] == "A first. B second. C third."
