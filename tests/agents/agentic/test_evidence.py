"""Evidence selection: Markdown cleaned into sentences, ranked by the real MiniLM plus term overlap."""

from __future__ import annotations

from agents.agentic.evidence import (
    EvidenceRanker,
    Passage,
    excerpts,
    format_quotes,
    rarity_weights,
    select_quotes,
    split_sentences,
    weighted_overlap,
    with_cited_neighbours,
)
from agents.agentic.lexical import content_terms
from agents.state import ContextDocument
from configs.settings import AgenticSettings


def doc(index: int, text: str, heading: str = "") -> ContextDocument:
    return ContextDocument(index=index, id=f"c{index}", source=f"d{index}.md", title="T", score=0.5, text=text,
                           heading=heading)


def passage(index: int, text: str, score: float, position: int = 0) -> Passage:
    return Passage(index=index, position=position, text=text, score=score)


def test_markdown_becomes_plain_sentences():
    text = ('Intro here. ### Roles The **Scribe** keeps the [timeline](http://x){:target="_blank"}.\n'
            "| SEV-4 | Minor issue |\n|---|---|\n* Page them with `!ic page` in Slack.")
    assert split_sentences(text) == ["Intro here.", "Roles The Scribe keeps the timeline.", "SEV-4 | Minor issue",
                                     "Page them with `!ic page` in Slack."]


def test_statements_read_alone_a_pronoun_stays_with_its_sentence_and_a_lead_in_carries_its_list():
    text = ("Grenade Thrower\nSomeone who joins the call late and derails it. They then leave at once.\n"
            "You should invite the following people to the meeting,\n\n* Always\n    * The Incident Commander.\n"
            "* Optional\n    * Customer Liaison. (Only SEV-1 incidents)\n\nThe owner runs the meeting. Lists end.")
    assert split_sentences(text) == [
        "Grenade Thrower",
        "Someone who joins the call late and derails it. They then leave at once.",
        ("You should invite the following people to the meeting, Always; The Incident Commander. Optional; "
         "Customer Liaison. (Only SEV-1 incidents)"),
        "The owner runs the meeting. Lists end.",  # too short to stand alone: it stays with the sentence before
    ]


def test_a_short_finished_sentence_joins_the_statement_before_it_a_heading_or_list_number_does_not():
    text = ("## Liaise With Law Enforcement\n**Delegate to:** VP or Director of Engineering\n\n"
            "* Contact local law enforcement.\n* Contact the FBI.\n\n1.\nSecure the evidence log.\n")
    assert split_sentences(text) == [
        "Liaise With Law Enforcement",  # a heading: no full stop, stays on its own
        "Delegate to: VP or Director of Engineering",
        "Contact local law enforcement. Contact the FBI.",  # dropped as a fragment before
        "1.", "Secure the evidence log.",
    ]


def test_a_raw_html_table_row_is_one_statement_with_its_first_cell():
    text = ('<tr>\n  <td class="sev-4">SEV-4</td>\n  <td>\n    <p>Minor issues requiring action.</p>\n'
            "    <ul>\n      <li>Individual host failure (one node out of a cluster).</li>\n    </ul>\n  </td>\n</tr>")
    assert split_sentences(text) == [("SEV-4 Minor issues requiring action. Individual host failure (one node "
                                      "out of a cluster).")]


def test_a_sentence_is_scored_under_its_heading(embeddings):
    # A glossary entry never names its term: the heading does.
    documents = [doc(1, "Grenade Thrower\nSomeone who joins the call late and derails the current thinking.",
                     heading="Glossary > Grenade Thrower"),
                 doc(2, "The incident call is run by the Incident Commander, who keeps the call on track.",
                     heading="Roles > Incident Commander")]
    question = "What is a grenade thrower on an incident call?"
    plain = EvidenceRanker(embeddings, AgenticSettings(evidence_heading_context=False)).rank(question, documents)
    headed = EvidenceRanker(embeddings, AgenticSettings()).rank(question, documents)
    assert plain[0]["index"] == 2
    assert headed[0]["text"] == "Someone who joins the call late and derails the current thinking."
    assert "Grenade Thrower" not in [p["text"] for p in headed]  # the heading line is context, not a quote


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
    assert quantity_gain(embeddings, question, documents) == {
        "Status reports tell the room the current state of every monitored system.": 0.0,
        "The stalking bot reports the state of the system every 30s.": 0.2}
    typed = EvidenceRanker(embeddings, AgenticSettings()).rank(question, documents)
    assert typed[0]["text"].endswith("every 30s.")


def quantity_gain(embeddings, question: str, documents: list[ContextDocument]) -> dict[str, float]:
    """What the quantity answer type adds to each statement's score."""
    plain = EvidenceRanker(embeddings, AgenticSettings(evidence_quantity_bonus=0.0)).rank(question, documents)
    typed = EvidenceRanker(embeddings, AgenticSettings()).rank(question, documents)
    before = {p["text"]: p["score"] for p in plain}
    return {t["text"]: round(t["score"] - before[t["text"]], 4) for t in typed}


def test_a_frequency_states_a_quantity_one_or_once_alone_does_not(embeddings):
    documents = [doc(1, "Usually every hour or so is what we recommend. One of the roles is the Deputy. "
                        "Once handed over, leave the call at once.")]
    assert quantity_gain(embeddings, "How often should the commander hand over?", documents) == {
        "Usually every hour or so is what we recommend.": 0.2, "One of the roles is the Deputy.": 0.0,
        "Once handed over, leave the call at once.": 0.0}


def test_a_lead_in_without_its_list_is_never_quoted():
    passages = [passage(1, "Before you can lead, you must meet the following criteria.", 0.9),
                passage(1, "If you could say it in one sentence, it would be:", 0.85),
                passage(2, "Has joined at least two major incident calls.", 0.8),
                passage(1, "Invite the following people: the Incident Commander; the Scribe.", 0.7)]
    assert [p["text"] for p in select_quotes(passages, 3)] == [passages[2]["text"], passages[3]["text"]]


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


def test_terms_match_across_word_forms():
    assert content_terms("Who assesses it?") == content_terms("the assessment") == ["assess"]
    assert content_terms("documented documents") == ["document"]


def test_a_rare_question_term_outweighs_one_every_sentence_shares():
    sentences = [{"incident", "call"}, {"incident", "review"}, {"incident", "fbi", "contact"}, {"incident"}]
    weights = rarity_weights(["incident", "fbi"], sentences)
    assert weights["fbi"] > 3 * weights["incident"] > 0
    assert weighted_overlap(weights, sentences[2]) == 1.0
    assert weighted_overlap(weights, sentences[0]) < 0.25 < weighted_overlap(weights, {"fbi"})
    assert weighted_overlap({}, sentences[0]) == 0.0


def test_a_quoted_follower_becomes_the_next_source_and_its_quote_cites_that_number():
    documents = [doc(1, "a"), doc(2, "b")]
    followers = [doc(3, "c"), doc(4, "d")]
    quotes = [passage(1, "from the first", 0.9), passage(4, "from the second follower", 0.8)]
    sources, cited = with_cited_neighbours(documents, followers, quotes)
    assert [(d["id"], d["index"]) for d in sources] == [("c1", 1), ("c2", 2), ("c4", 3)]
    assert [q["index"] for q in cited] == [1, 3]
    assert with_cited_neighbours(documents, followers, quotes[:1]) == (documents, quotes[:1])
