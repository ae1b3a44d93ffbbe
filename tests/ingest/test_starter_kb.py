"""The product's own user guide: ingested at startup, and it answers questions about the product."""

from __future__ import annotations

from pathlib import Path

import pytest

from configs.settings import AppSettings
from ingest.pipeline import IngestError
from ingest.starter import ensure_starter_kb
from retrieval.retriever import build_retriever

pytestmark = pytest.mark.slow


def test_starter_kb_is_idempotent_and_answers_product_questions(store_settings: AppSettings) -> None:
    first = ensure_starter_kb(store_settings)
    assert first.skipped == []
    assert 6 <= first.files_ingested <= 10
    assert first.chunks_added > first.files_ingested

    again = ensure_starter_kb(store_settings)
    assert (again.chunks_added, again.chunks_present) == (0, first.chunks_added)

    retriever = build_retriever(store_settings)
    expectations = {
        "Which hazard categories does the safety guard check?": "safety-policy.md",
        "How do I stream the answer with Server-Sent Events?": "chat-api.md",
        "What is the loss for negative examples in ULMA?": "fine-tuning-ulma.md",
        "How do environment variables override the YAML profile?": "configuration.md",
        "How do I run several replicas with a Chroma server in docker-compose?": "deployment.md",
        "Which file types can I ingest?": "ingesting-documents.md",
        "What should I do when the Chroma server cannot be reached?": "faq-troubleshooting.md",
        "How do I send my API key?": "chat-api.md",
    }
    for question, expected in expectations.items():
        hits = retriever.search(question)
        assert hits, question
        assert Path(hits[0].source).name == expected, (question, [Path(h.source).name for h in hits])


def test_missing_starter_dir_says_which_setting_to_fix(store_settings: AppSettings, tmp_path: Path) -> None:
    settings = store_settings.model_copy(
        update={"ingest": store_settings.ingest.model_copy(update={"starter_kb_dir": tmp_path / "gone"})}
    )
    with pytest.raises(IngestError, match="ingest.starter_kb_dir"):
        ensure_starter_kb(settings)
