"""Retrieval quality on kb-pagerduty-ir: hit rate @1/@4, MRR@10 and facts @4; dense, and hybrid by each fusion.

    python -m benchmarks.retrieval_quality            # dev set: writes benchmarks/results/retrieval_quality.json
    python -m benchmarks.retrieval_quality --questions configs/eval/kb_pagerduty_heldout.jsonl \
        --out benchmarks/results/retrieval_quality_heldout.json

Each answerable row names the files that hold its answer; a hit is a retrieved chunk from one of them. Facts
@4 is stricter: the top 4 chunks (what the agent reads) hold every key fact of the row, so the right file's
wrong section does not count. A follow-up row is searched with both turns joined, as the agent does when the
last turn alone finds nothing. The relevance floor is off (0), so the figures measure ranking only.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from configs.settings import PROJECT_ROOT, load_settings
from ingest.pipeline import ingest_paths
from lab.agent.evaluate import has_fact
from retrieval.retriever import build_retriever

DEFAULT_KB = PROJECT_ROOT.parent / "shared" / "data" / "kb-pagerduty-ir"
RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "retrieval_quality.json"
DEPTH = 10


MODES = {  # name -> (hybrid, fusion)
    "dense": (False, "convex"),
    "hybrid_rrf": (True, "rrf"),
    "hybrid_convex": (True, "convex"),
}


def load_questions(qa_path: Path) -> list[tuple[str, set[str], list[str]]]:
    """(query, answer sources relative to docs/, key facts) for every answerable row."""
    rows = [json.loads(line) for line in qa_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [("\n".join(row["turns"]), set(row["sources"]), row.get("key_facts", []))
            for row in rows if row["answerable"]]


def evaluate(kb_dir: Path, persist_dir: Path, qa_path: Path | None = None) -> dict[str, Any]:
    settings = load_settings(overrides={
        "vector_store.persist_dir": persist_dir, "vector_store.collection": "kb_pagerduty",
        "retrieval.min_relevance": 0.0,
    })
    started = time.perf_counter()
    report = ingest_paths([kb_dir / "docs"], settings)
    ingest_s = time.perf_counter() - started
    retriever = build_retriever(settings)
    questions = load_questions(qa_path or kb_dir / "qa.jsonl")
    with_facts = sum(bool(facts) for _, _, facts in questions)
    results: dict[str, Any] = {"questions": len(questions), "questions_with_facts": with_facts,
                               "chunks": report.chunks_added + report.chunks_present, "ingest_s": round(ingest_s, 1),
                               "lexical_weight": settings.retrieval.lexical_weight}
    for mode, (hybrid, fusion) in MODES.items():
        retriever.settings = settings.retrieval.model_copy(update={"fusion": fusion})
        ranks, facts_found = [], 0
        for query, sources, facts in questions:
            hits = retriever.search(query, k=DEPTH, hybrid=hybrid)
            found = [hit.source.removeprefix("docs/") in sources for hit in hits]
            ranks.append(found.index(True) + 1 if True in found else None)
            top_4 = " ".join(hit.text for hit in hits[:4])  # the same chunks as a search with k=4
            facts_found += bool(facts) and all(has_fact(fact, top_4) for fact in facts)
        results[mode] = {
            "hit_at_1": round(sum(r == 1 for r in ranks if r) / len(ranks), 3),
            "hit_at_4": round(sum(1 for r in ranks if r and r <= 4) / len(ranks), 3),
            f"mrr_at_{DEPTH}": round(sum(1 / r for r in ranks if r) / len(ranks), 3),
            "facts_at_4": round(facts_found / with_facts, 3) if with_facts else None,
        }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kb", type=Path, default=DEFAULT_KB, help="folder holding docs/ and qa.jsonl")
    parser.add_argument("--questions", type=Path, help="QA file (default: the --kb folder's qa.jsonl)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        results = evaluate(args.kb, Path(tmp) / "chroma", args.questions)
    import chromadb
    import sentence_transformers

    results.update({
        "command": "python -m benchmarks.retrieval_quality " + " ".join(argv or sys.argv[1:]),
        "data": f"{args.questions or args.kb / 'qa.jsonl'}, answerable rows",
        "embedder": "all-MiniLM-L6-v2 (packaged)", "device": f"CPU, {platform.machine()}",
        "versions": {"python": platform.python_version(), "chromadb": chromadb.__version__,
                     "sentence_transformers": sentence_transformers.__version__},
        "date": time.strftime("%Y-%m-%d"),
    })
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'mode':14} {'hit@1':>6} {'hit@4':>6} {'MRR@10':>7} {'facts@4':>8}")
    for mode in MODES:
        row = results[mode]
        print(f"{mode:14} {row['hit_at_1']:6.3f} {row['hit_at_4']:6.3f} {row[f'mrr_at_{DEPTH}']:7.3f} "
              f"{row['facts_at_4'] if row['facts_at_4'] is not None else '-':>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
