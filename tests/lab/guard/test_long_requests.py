"""The pasted documents of the long-request probe: prose only, long enough, the same for the same seed."""

from __future__ import annotations

from pathlib import Path

from lab.guard.long_requests import CONTEXT_WORDS, contexts, prose_paragraphs


def test_documents_are_seeded_prose_of_at_least_the_context_length(tmp_path: Path):
    prose = " ".join(["The on-call engineer acknowledges the page and joins the call."] * 5)
    (tmp_path / "a.md").write_text(f"# Heading with many words {prose}\n\n{prose}\n\n* a list item {prose}\n\nshort\n")
    (tmp_path / "b.md").write_text(f"| table | {prose} |\n\n{prose.upper()}\n")
    paragraphs = prose_paragraphs(tmp_path)
    assert paragraphs == [prose, prose.upper()]  # no heading, list, table or short paragraph
    documents = contexts(paragraphs, 3, seed=0)
    assert documents == contexts(paragraphs, 3, seed=0)
    assert all(len(d.split()) >= CONTEXT_WORDS for d in documents)
