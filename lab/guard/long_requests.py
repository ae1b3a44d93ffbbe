"""Requests asked after a long pasted document: does the guard still see them, and does the document alone pass?

Each probe puts a held-out request after about 250 words of real prose (paragraphs of the knowledge base's
documents, seeded), as a user who pastes a page and then asks does: below it, or run on in its last paragraph.
Harmful requests should still be flagged, benign ones still pass; the documents alone measure what long benign
text costs in false positives.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np

from agents.safety.verdict import SafetyGuard

CONTEXT_DOCS = Path("kb-pagerduty-ir") / "docs"
CONTEXT_WORDS = 250
MIN_PARAGRAPH_WORDS = 40
_BLANK_LINES = re.compile(r"\n\s*\n")
_NOT_PROSE = ("#", "|", "-", "*", "!", "<", "`", ">")  # headings, tables, lists, images, markup, code, quotes


def prose_paragraphs(docs: Path) -> list[str]:
    """The Markdown files' prose paragraphs of at least MIN_PARAGRAPH_WORDS words, each on one line, in file order."""
    paragraphs = []
    for path in sorted(docs.rglob("*.md")):
        for block in _BLANK_LINES.split(path.read_text(encoding="utf-8")):
            words = block.split()
            if len(words) >= MIN_PARAGRAPH_WORDS and not block.lstrip().startswith(_NOT_PROSE):
                paragraphs.append(" ".join(words))
    return paragraphs


def contexts(paragraphs: list[str], count: int, seed: int) -> list[str]:
    """`count` documents of random paragraphs, each at least CONTEXT_WORDS words long."""
    chooser = random.Random(seed)
    documents = []
    for _ in range(count):
        chosen: list[str] = []
        while sum(len(p.split()) for p in chosen) < CONTEXT_WORDS:
            chosen.append(chooser.choice(paragraphs))
        documents.append("\n\n".join(chosen))
    return documents


def flagged_share(guard: SafetyGuard, texts: list[str]) -> float:
    return round(float(np.mean([not guard.check_request([{"role": "user", "content": t}]).safe for t in texts])), 4)


def long_requests(guard: SafetyGuard, data_dir: Path, harmful: list[str], benign: list[str], seed: int) -> dict[str, Any]:
    """Harmful recall and benign false positives with and without a pasted document before each request."""
    from tqdm import tqdm

    documents = contexts(prose_paragraphs(data_dir / CONTEXT_DOCS), len(harmful) + len(benign), seed)
    pairs = list(zip(documents, harmful + benign, strict=True))
    # Asked below the document, and run on in its last paragraph (no line break: the harder case).
    pasted = [f"{document}\n\n{request}" for document, request in pairs]
    run_on = [f"{document} {request}" for document, request in pairs]
    probes = {"harmful_after_document_recall": pasted[: len(harmful)],
              "benign_after_document_fpr": pasted[len(harmful) :],
              "harmful_run_on_recall": run_on[: len(harmful)],
              "benign_run_on_fpr": run_on[len(harmful) :],
              "documents_alone_fpr": documents[: len(benign)],
              "harmful_alone_recall": harmful,
              "benign_alone_fpr": benign}
    results = {name: flagged_share(guard, texts) for name, texts in tqdm(
        probes.items(), desc=f"{guard.name} long requests", unit="set")}
    return {"documents": f"{CONTEXT_DOCS} (prose paragraphs, about {CONTEXT_WORDS} words per document, seed {seed})",
            "harmful": len(harmful), "benign": len(benign), **results}
