"""How well does the quoted-evidence selection find the answer, and which signal does the work?

For every answerable row of a QA set (turns, key_facts, sources), the cited source files are chunked as the
ingest chunks them, the 4 chunks nearest the question stand in for retrieval (so retrieval misses do not
blur the comparison), the chunk after each in its file and the one before it in the same section for the
neighbours the graph reads on, and agents.agentic.evidence quotes up to 3 sentences from them. Reported: the share of
rows whose quotes hold every key fact, for the cosine-only, term-overlap-only and mixed scores, the mixed
score with the quantity answer-type bonus, with each statement scored under its heading too, and with the
following chunks' statements as candidates, then the section openings' (the default). Term overlap weighs terms by their rarity.

    python -m benchmarks.evidence_selection --corpus ../shared/data/kb-pagerduty-ir/docs \
        --questions ../shared/data/kb-pagerduty-ir/qa.jsonl
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from agents.agentic.evidence import EvidenceRanker, select_quotes
from agents.agentic.router import standalone_query
from agents.nodes import to_context_documents
from configs.settings import PROJECT_ROOT, AgenticSettings, load_settings
from ingest.chunking import Chunk, chunk_document
from ingest.loaders import load_document
from lab.agent.evaluate import has_fact, load_questions
from retrieval.embeddings import build_embeddings
from retrieval.retriever import RetrievedChunk

DEFAULT = AgenticSettings()
NO_NEIGHBOURS = {"evidence_following_chunks": False, "evidence_section_openings": False}
PLAIN = {"evidence_quantity_bonus": 0.0, "evidence_heading_context": False, **NO_NEIGHBOURS}
VARIANTS = {  # each signal alone, then added one at a time up to the default
    "lexical only": AgenticSettings(**PLAIN, evidence_similarity_weight=0.0),
    "cosine only": AgenticSettings(**PLAIN, evidence_similarity_weight=1.0),
    "mixed": AgenticSettings(**PLAIN),
    "mixed + quantity answer type": AgenticSettings(evidence_heading_context=False, **NO_NEIGHBOURS),
    "mixed + quantity answer type + heading context": AgenticSettings(**NO_NEIGHBOURS),
    "mixed + quantity answer type + heading context + following chunks":
        AgenticSettings(evidence_section_openings=False),
    "mixed + quantity answer type + heading context + following chunks + section openings (default)": DEFAULT,
}
CHUNKS = 4
OUTPUT = PROJECT_ROOT / "benchmarks" / "results" / "evidence_selection.json"


def stand_in(chunk: Chunk) -> RetrievedChunk:
    return RetrievedChunk(id=chunk.id, text=chunk.text, source="", score=1.0, metadata=chunk.metadata)


def neighbours(chunks: list[Chunk], nearest: Sequence[int], step: int, *, same_section: bool = False) -> list[int]:
    """The positions `step` places from each nearest chunk, in the same file (and section), not already near."""
    found = []
    for i in nearest:
        j = i + step
        if (0 <= j < len(chunks) and j not in nearest and j not in found
                and chunks[j].metadata["source"] == chunks[i].metadata["source"]
                and (not same_section or chunks[i].metadata.get("heading")
                     and chunks[j].metadata.get("heading") == chunks[i].metadata.get("heading"))):
            found.append(j)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--questions", type=Path, required=True)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)

    settings = load_settings()
    embeddings = build_embeddings(settings.embedding)
    rows = [q for q in load_questions(args.questions) if q.kind in ("answerable", "follow_up")]
    found = {name: 0 for name in VARIANTS}
    per_row = []
    for row in rows:
        chunks = [c for source in row.expected_sources
                  for c in chunk_document(load_document(args.corpus / source), source, settings.ingest)]
        query = standalone_query(row.question, row.history)  # as the graph asks a follow-up
        vectors = np.asarray(embeddings.embed_documents([query] + [c.text for c in chunks]))
        nearest = np.argsort(-(vectors[1:] @ vectors[0]))[:CHUNKS]
        documents = to_context_documents([stand_in(chunks[i]) for i in nearest])
        # The chunks beside each one in its file, as the retriever's `adjacent` reads them from the store.
        after = neighbours(chunks, nearest, 1)
        before = [i for i in neighbours(chunks, nearest, -1, same_section=True) if i not in after]
        following = to_context_documents([stand_in(chunks[i]) for i in after], start=CHUNKS + 1)
        openings = to_context_documents([stand_in(chunks[i]) for i in before], start=CHUNKS + 1 + len(after))
        hits = {}
        for name, variant in VARIANTS.items():
            ranker = EvidenceRanker(embeddings, variant)
            context = (documents + (following if variant.evidence_following_chunks else [])
                       + (openings if variant.evidence_section_openings else []))
            quotes = " ".join(p["text"] for p in select_quotes(ranker.rank(query, context), 3))
            hits[name] = all(has_fact(fact, quotes) for fact in row.key_facts)
            found[name] += hits[name]
        per_row.append({"id": row.id, **hits})
    rates = {name: round(count / len(rows), 3) for name, count in found.items()}
    report = {"command": "python -m benchmarks.evidence_selection " + " ".join(sys.argv[1:]),
              "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
              "load_average": [round(x, 2) for x in os.getloadavg()], "rows": len(rows),
              "key_facts_in_quotes": rates, "per_row": per_row}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print("| score | rows whose quotes hold every key fact |\n| --- | --- |")
    for name, rate in rates.items():
        print(f"| {name} | {rate:.3f} ({found[name]}/{len(rows)}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
