"""ONNX Runtime for the MiniLM encoders on the CPU: the vectors torch gives, the export cached by weights and
rebuilt when the cached file is damaged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from configs.settings import EmbeddingSettings
from retrieval.embeddings import SentenceTransformerEmbeddings, load_sentence_model
from retrieval.onnx_encoder import OnnxEncoder

pytestmark = pytest.mark.slow

SHORT = ["How do I page an Incident Commander from Slack?", "SEV-1 or SEV-2?", "ünïcode wörds", "a"]
LONG = [" ".join(["The incident commander coordinates the response and keeps the timeline."] * 12)]


def test_both_runtimes_give_the_same_vectors() -> None:
    onnx = SentenceTransformerEmbeddings(EmbeddingSettings(runtime="onnx"))
    torch = SentenceTransformerEmbeddings(EmbeddingSettings(runtime="torch"))
    assert onnx.hidden_states.onnx is not None and torch.hidden_states.onnx is None
    texts = SHORT + LONG  # one batch padded past ONNX_MAX_BATCH_TOKENS: torch embeds it in both
    np.testing.assert_allclose(onnx.embed_documents(texts), torch.embed_documents(texts), atol=1e-5)
    np.testing.assert_allclose(onnx.embed_query(SHORT[0]), torch.embed_query(SHORT[0]), atol=1e-5)
    # sentence-transformers' own pipeline (the reference the store was built with)
    reference = torch.model.encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(onnx.embed_documents(texts), reference, atol=1e-5)


def test_the_export_is_cached_and_a_damaged_file_is_exported_again(tmp_path: Path) -> None:
    model = load_sentence_model(EmbeddingSettings().name_or_path)[0].auto_model
    batch = load_sentence_model(EmbeddingSettings().name_or_path).tokenizer(SHORT, padding=True, return_tensors="np")
    expected = OnnxEncoder.from_model(model, tmp_path, 1)(batch)
    (exported,) = tmp_path.glob("*.onnx")
    written = exported.stat().st_mtime_ns

    assert np.array_equal(OnnxEncoder.from_model(model, tmp_path, 1)(batch), expected)
    assert exported.stat().st_mtime_ns == written  # loaded, not exported again

    exported.write_bytes(exported.read_bytes()[:1000])  # cut short, as by a full disk
    assert np.array_equal(OnnxEncoder.from_model(model, tmp_path, 1)(batch), expected)
    assert [path.name for path in tmp_path.iterdir()] == [exported.name]  # no partial file left behind
