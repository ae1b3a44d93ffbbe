"""The sentences of the retrieved chunks that best answer a question: shown to the generator as excerpts, and
quoted to the user (with their citations) when a generated answer stays unsupported.

A sentence's score mixes two signals: its embedding's cosine with the question's (finds paraphrases: "how
often does the bot check" ~ "polls every 30s") and the share of the question's content terms it contains
(finds exact names and identifiers that a small embedder blurs), each term weighted by its rarity among the
candidate sentences (inverse document frequency: "FBI" says more than "incident" in an incident-response
manual). Neither signal alone is enough on short questions.
A question that asks for a quantity ("how long", "how often", "how many") adds a third, the expected answer
type: sentences that state a number or a frequency get a bonus (agent.agentic.evidence_quantity_bonus).
The unit is a statement a reader can take alone (split_sentences), scored under its section's heading path
(agent.agentic.evidence_heading_context), as a reader sees it in the document.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import TypedDict

import numpy as np

from agents.agentic.grounding import EmbedsTexts
from agents.agentic.lexical import content_terms, overlap
from agents.state import ContextDocument
from configs.settings import AgenticSettings

# Markup that carries no meaning for a reader of a quote (Markdown, MkDocs attributes, HTML tags).
_MARKUP = [
    (re.compile(r"!\[[^\]]*\]\([^)]*\)"), ""),  # images
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # links keep their text
    (re.compile(r"\{:[^}]*\}"), ""),  # {:target="_blank"}
    (re.compile(r"<[^>]+>"), " "),  # HTML tags
    (re.compile(r"\*\*|__"), ""),  # bold
    (re.compile(r"^\s*(?:#{1,6}|>|[*+-]|\d+[.)]|!!!\s*\w+)\s+"), ""),  # heading, quote, list, admonition leads
    (re.compile(r"\s*\|\s*"), " | "),  # table cells
    (re.compile(r"\s+"), " "),
]
# A sentence ends at . ! ? before a capital, digit or quote; a chunker that joined lines leaves headings
# ("### Command Staff") inline, and they start a new piece too.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'`(\[*_A-Z0-9])|\s+(?=#{1,6}\s)")
_LIST_ITEM = re.compile(r"^\s*(?:[*+-]|\d+[.)])\s+")
_LEAD_IN = re.compile(r"[:,]$|\bthe following\b", re.IGNORECASE)
_CONTINUES = re.compile(r"(?:They|Them|Their|It|Its|This|These|Those|He|She|His|Her|Such)\b")
MIN_TERMS = 3  # fewer content terms: a heading or a fragment, not a statement
MAX_CHARS = 400  # longer "sentences" (run-on tables, lists without stops) are cut
# Further quotes must score at least this share of the best one: a weak third sentence dilutes the evidence, but
# the fact often sits in the second or third statement (0.8 -> 0.6: dev set unchanged, held-out set +3 of 22).
RELATIVE_SCORE = 0.6
DUPLICATE_TERMS = 0.7  # term overlap at which a sentence repeats one already chosen (the corpus retells itself)

_ASKS_QUANTITY = re.compile(
    r"\bhow (?:long|often|frequently|many|much|soon|quickly|late|early|old)\b|\bwhat (?:time|percentage)\b",
    re.IGNORECASE,
)
_TIME_UNIT = r"(?:second|minute|hour|day|week|month|quarter|year|shift)s?"
# A number, a frequency ("twice", "weekly", "every hour or so", "once a day"). Not "one" or "once" alone: "one of
# the roles", "once you are done" state no quantity.
_STATES_QUANTITY = re.compile(
    r"\d|\b(?:two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|forty|fifty|hundred|"
    r"twice|daily|weekly|monthly|hourly|annual|annually|biannual|quarterly)\b"
    rf"|\b(?:one|once|an?|every|per|each)\s+{_TIME_UNIT}\b|\bonce\s+(?:a|an|per|every)\b",
    re.IGNORECASE,
)
# A lead-in whose list is not with it ("meet the following criteria.", "it would be:") promises an answer
# without giving one: never quoted on its own.
_DANGLING_LEAD_IN = re.compile(r"(?::|\bthe following(?:\s+\w+)?[.:]?)$", re.IGNORECASE)


class Passage(TypedDict):
    index: int  # the citation number of the document it comes from
    position: int  # its order within that document
    text: str
    score: float


def clean_line(line: str) -> str:
    for pattern, replacement in _MARKUP:
        line = pattern.sub(replacement, line)
    return line.strip(" |")


def split_sentences(text: str) -> list[str]:
    """The statements of a chunk, each readable alone: a sentence that opens with a pronoun ("They then leave")
    stays with the one before it, so does a sentence too short to stand alone ("Contact the FBI."), and a
    list's lead-in ("invite the following people:") carries the items."""
    statements: list[str] = []
    takes_list = False  # the last statement introduces a list that may follow
    for line in _html_blocks_joined(text.splitlines()):
        if not line.strip():
            continue
        if takes_list and _LIST_ITEM.match(line):
            item = clean_line(line)
            if item:
                statements[-1] += (" " if statements[-1][-1] in ".:;,!?" else "; ") + item
            continue
        takes_list = False
        for position, piece in enumerate(_SENTENCE_END.split(line)):
            cleaned = clean_line(piece)
            if not cleaned or set(cleaned) <= set("-|: "):
                continue
            if statements and (position and _CONTINUES.match(cleaned) or _is_fragment(cleaned)):
                statements[-1] += " " + cleaned
            else:
                statements.append(cleaned)
            takes_list = bool(_LEAD_IN.search(cleaned))
    return [s if len(s) <= MAX_CHARS else s[:MAX_CHARS].rsplit(" ", 1)[0] + " …" for s in statements]


def _is_fragment(sentence: str) -> bool:
    """A finished sentence too short to stand alone: it belongs to the statement before it. (A heading or a
    term has no full stop, and stays on its own.)"""
    words = [term for term in content_terms(sentence) if not term.isdigit()]  # "1." is a list number, not a word
    return sentence[-1] in ".!?" and 0 < len(words) < MIN_TERMS


def _html_blocks_joined(lines: list[str]) -> list[str]:
    """Consecutive lines of raw HTML (a table kept in Markdown) as one line: a table row reads as one statement,
    its first cell ("SEV-4") with the rest."""
    joined: list[str] = []
    for line in lines:
        if joined and line.lstrip().startswith("<") and joined[-1].lstrip().startswith("<"):
            joined[-1] += " " + line.strip()
        else:
            joined.append(line)
    return joined


class EvidenceRanker:
    def __init__(self, embeddings: EmbedsTexts, settings: AgenticSettings) -> None:
        self.embeddings = embeddings
        self.settings = settings

    def rank(self, question: str, documents: Sequence[ContextDocument]) -> list[Passage]:
        """Every statement-like sentence of the documents, best first."""
        candidates = []  # (citation number, position, sentence, the text it is scored as)
        for doc in documents:
            heading = doc.get("heading", "") if self.settings.evidence_heading_context else ""
            titles = {part.strip() for part in heading.split(">")}
            for position, sentence in enumerate(split_sentences(doc["text"])):
                if len(content_terms(sentence)) < MIN_TERMS or sentence in titles:
                    continue  # a fragment, or the section's own heading line (its context, not a statement)
                scored = f"{heading.replace(' > ', ': ')}: {sentence}" if heading else sentence
                candidates.append((doc["index"], position, sentence, scored))
        if not candidates:
            return []
        vectors = np.asarray(self.embeddings.embed_documents([question] + [scored for *_, scored in candidates]))
        similarity = vectors[1:] @ vectors[0]
        term_sets = [set(content_terms(scored)) for *_, scored in candidates]
        weights = rarity_weights(content_terms(question), term_sets)
        weight = self.settings.evidence_similarity_weight
        bonus = self.settings.evidence_quantity_bonus if _ASKS_QUANTITY.search(question) else 0.0
        passages = [
            Passage(index=index, position=position, text=text,
                    score=round(weight * float(cosine) + (1 - weight) * weighted_overlap(weights, terms)
                                + bonus * bool(_STATES_QUANTITY.search(text)), 4))
            for (index, position, text, _), cosine, terms in zip(candidates, similarity, term_sets)
        ]
        return sorted(passages, key=lambda p: p["score"], reverse=True)


def rarity_weights(terms: Sequence[str], term_sets: Sequence[set[str]]) -> dict[str, float]:
    """Each question term's inverse document frequency over the candidate sentences (BM25's smoothed form)."""
    weights = {}
    for term in terms:
        holding = sum(term in sentence_terms for sentence_terms in term_sets)
        weights[term] = math.log(1 + (len(term_sets) - holding + 0.5) / (holding + 0.5))
    return weights


def weighted_overlap(weights: dict[str, float], terms: set[str]) -> float:
    """The share of the question's term weight that a sentence contains (0 when the question has no terms)."""
    total = sum(weights.values())
    return sum(w for term, w in weights.items() if term in terms) / total if total else 0.0


def excerpts(documents: Sequence[ContextDocument], passages: Sequence[Passage], per_document: int
             ) -> list[ContextDocument]:
    """Each document cut to its best `per_document` sentences, in their original order (0: unchanged).

    A short prompt is read faster on a small CPU, and a small model copies the right sentence more often
    when the sentences around it are gone.
    """
    if per_document == 0:
        return list(documents)
    cut = []
    for doc in documents:
        best = [p for p in passages if p["index"] == doc["index"]][:per_document]
        text = " ".join(p["text"] for p in sorted(best, key=lambda p: p["position"]))
        cut.append(ContextDocument(**{**doc, "text": text or doc["text"]}))
    return cut


def select_quotes(passages: Sequence[Passage], limit: int) -> list[Passage]:
    """The best passage, and up to `limit - 1` more that score nearly as well and say something new (a lead-in
    without its list says nothing yet)."""
    chosen: list[Passage] = []
    for passage in (p for p in passages if not _DANGLING_LEAD_IN.search(p["text"])):
        if len(chosen) == limit or (chosen and passage["score"] < RELATIVE_SCORE * chosen[0]["score"]):
            break
        terms = content_terms(passage["text"])
        if all(overlap(terms, earlier["text"]) < DUPLICATE_TERMS for earlier in chosen):
            chosen.append(passage)
    return chosen


def with_cited_neighbours(documents: Sequence[ContextDocument], neighbours: Sequence[ContextDocument],
                          quotes: Sequence[Passage]) -> tuple[list[ContextDocument], list[Passage]]:
    """The documents plus the neighbours that a quote cites, renumbered to follow them without gaps, and the
    quotes citing the new numbers: every [n] of the answer maps to the n-th source."""
    cited = {quote["index"] for quote in quotes}
    renumber = {doc["index"]: len(documents) + offset
                for offset, doc in enumerate((n for n in neighbours if n["index"] in cited), start=1)}
    added = [ContextDocument(**{**doc, "index": renumber[doc["index"]]})
             for doc in neighbours if doc["index"] in renumber]
    renumbered = [Passage(**{**quote, "index": renumber.get(quote["index"], quote["index"])}) for quote in quotes]
    return [*documents, *added], renumbered


def format_quotes(intro: str, quotes: Sequence[Passage]) -> str:
    return "\n".join([intro.strip(), *(f'- "{quote["text"]}" [{quote["index"]}]' for quote in quotes)])
