"""The product's own user guide, ingested when the service first starts."""

from __future__ import annotations

import logging

from langchain_chroma import Chroma

from configs.settings import AppSettings
from ingest.pipeline import IngestError, IngestReport, ingest_paths

logger = logging.getLogger(__name__)


def ensure_starter_kb(settings: AppSettings, *, store: Chroma | None = None) -> IngestReport:
    """Sync `ingest.starter_kb_dir` (pages removed from it are pruned); cheap when it is already in.

    Whether to call it at all is the caller's choice (`ingest.ingest_starter_on_startup`).
    """
    kb_dir = settings.ingest.starter_kb_dir
    if not kb_dir.is_dir():
        raise IngestError(f"starter knowledge base not found at {kb_dir}; set ingest.starter_kb_dir")
    report = ingest_paths([kb_dir], settings, prune=True, progress=False, store=store)
    logger.info("starter knowledge base: %s", report.summary())
    return report
