"""Where a sentence encoder's forward runs: the runtime chosen per device, small CPU batches through ONNX Runtime
and larger ones through torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from configs.settings import EmbeddingSettings
from retrieval.embeddings import load_sentence_model
from retrieval.hidden_states import ONNX_MAX_BATCH_TOKENS, HiddenStates, chosen_runtime
from retrieval.onnx_encoder import OnnxEncoder

SHORT = ["How do I page an Incident Commander from Slack?", "SEV-1 or SEV-2?", "ünïcode wörds", "a"]
LONG = [" ".join(["The incident commander coordinates the response and keeps the timeline."] * 12)]


def test_onnx_serves_the_cpu_and_cuda_graphs_the_gpu() -> None:
    assert chosen_runtime("auto", "cpu") == "onnx" and chosen_runtime("auto", "cuda") == "cuda_graphs"
    assert chosen_runtime("auto", "mps") == "torch"
    assert chosen_runtime("torch", "cpu") == "torch" and chosen_runtime("torch", "cuda") == "torch"
    with pytest.raises(ValueError, match="CPU only"):
        chosen_runtime("onnx", "cuda")
    with pytest.raises(ValueError, match="CUDA GPUs only"):
        chosen_runtime("cuda_graphs", "cpu")


@pytest.mark.slow
def test_small_batches_go_to_onnx_and_large_ones_to_torch(tmp_path: Path) -> None:
    model = load_sentence_model(EmbeddingSettings().name_or_path)
    states = HiddenStates(model[0].auto_model, OnnxEncoder.from_model(model[0].auto_model, tmp_path, 1))
    tokenize = lambda texts: model.tokenizer(texts, padding=True, return_tensors="np")
    short, long = tokenize(SHORT), tokenize(LONG)
    assert short["input_ids"].size <= ONNX_MAX_BATCH_TOKENS < long["input_ids"].size
    assert np.array_equal(states(short), states.onnx(short))
    assert np.array_equal(states(long), HiddenStates(states.model)(long))
