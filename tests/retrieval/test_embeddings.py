"""The packaged MiniLM behind LangChain's Embeddings interface."""

from __future__ import annotations

import numpy as np
import pytest

from configs.settings import load_settings
from retrieval.embeddings import build_embeddings

pytestmark = pytest.mark.slow


def test_a_query_embeds_exactly_as_a_document_does() -> None:
    embeddings = build_embeddings(load_settings().embedding)
    texts = ["How do I page an Incident Commander from Slack?", "SEV-1 or SEV-2?", "ünïcode wörds"]
    documents = np.array(embeddings.embed_documents(texts))
    queries = np.array([embeddings.embed_query(text) for text in texts])
    assert queries.shape == (3, 384)
    np.testing.assert_allclose(queries, documents, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-6)
