"""The guard's own MiniLM encoder: what it computes, what it caches, and that the heads must match it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from agents.safety.classifier import EmbeddingClassifierGuard
from agents.safety.heads import ClassifierFilesError
from configs.settings import EMBEDDED_EMBEDDER, load_settings

SHIPPED = load_settings().safety.classifier_path


def test_heads_trained_on_other_embeddings_are_refused(tmp_path: Path):
    weights = tmp_path / "weights"
    shutil.copytree(SHIPPED, weights)
    manifest = json.loads((weights / "manifest.json").read_text())
    manifest["embedding_dtype"] = "bfloat16"
    (weights / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ClassifierFilesError, match="retrain"):
        EmbeddingClassifierGuard.load(weights)


@pytest.mark.slow
def test_the_tuned_encoder_leaves_the_retrievers_model_as_it_was(classifier_guard):
    """Without its adapter the encoder is sentence-transformers' MiniLM; the guard's copy is tuned, and merging
    the adapter into it must not touch the shared model the retriever embeds documents with."""
    from agents.safety.encoder import SentenceEncoder
    from retrieval.embeddings import load_sentence_model

    texts = ["How do I kill a Python process?", "Mexicans are lazy.", "A longer question " * 20]
    shared = load_sentence_model(EMBEDDED_EMBEDDER)
    reference = shared.encode(texts, normalize_embeddings=True)
    plain = SentenceEncoder.load(EMBEDDED_EMBEDDER, cache_size=0).forward(texts)
    assert (plain * reference).sum(axis=1).min() >= 0.9999
    tuned = classifier_guard.encode.forward(texts)
    assert np.allclose(np.linalg.norm(tuned, axis=1), 1.0, atol=1e-5)
    assert (tuned * reference).sum(axis=1).max() < 0.99
    assert np.allclose(shared.encode(texts, normalize_embeddings=True), reference, atol=1e-6)


@pytest.mark.slow
def test_answer_check_reuses_the_request_embedding(classifier_guard, monkeypatch):
    forwarded: list[list[str]] = []
    forward = classifier_guard.encode.forward
    monkeypatch.setattr(classifier_guard.encode, "forward", lambda texts: forwarded.append(texts) or forward(texts))
    messages = [{"role": "user", "content": "What is a good name for a goldfish called by a nine-year-old?"}]

    classifier_guard.check_request(messages)
    classifier_guard.check_response(messages, "Bubbles, Goldie or Captain Fin.")

    assert forwarded == [[messages[0]["content"]], ["Bubbles, Goldie or Captain Fin."]]
