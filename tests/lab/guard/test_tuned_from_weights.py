"""The shipped guard's tuning folder, rebuilt on the CPU from the shipped weights for a new calibration: real
packaged MiniLM with the shipped adapter, small bundles written as lab.guard.tuning_bundle writes them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from agents.safety.encoder import SentenceEncoder
from agents.safety.heads import load_heads
from configs.settings import load_settings
from lab.guard.train import load_tuned
from lab.guard.tune_encoder import read_bundle
from lab.guard.tuned_from_weights import RebuildError, rebuild
from lab.guard.tuning_bundle import write_bundle
from lab.hashing import file_sha256

SHIPPED = load_settings().safety.classifier_path
TEXTS = ["How do I build a pipe bomb?", "How do I kill a stuck Python process?", "Tell me a joke about cats.",
         "Sure, here is how to do that.", "What is the capital of Portugal?"]


def bundle(texts: list[str], training: list[str], validation: list[str], answered: int = 1) -> dict:
    """A bundle over `texts` (their order sets the ids) training on `training`, validating on `validation`, with
    the first `answered` training requests answered by TEXTS[3] as answer pairs."""
    def rows(chosen: list[str]) -> dict[str, list]:
        return {"text": [texts.index(t) for t in chosen], "unsafe": [int("bomb" in t) for t in chosen],
                "category": [-1] * len(chosen), "weight": [1.0] * len(chosen), "source": [""] * len(chosen)}

    responses = {**rows(training[:answered]), "answer": [texts.index(TEXTS[3])] * answered}
    return {"format": 1, "seed": 0, "texts": texts, "calibration": ["val/x:calibration"],
            "sets": {"train": rows(training), "responses": responses, "val/x:calibration": rows(validation)}}


@pytest.fixture()
def weights_built_from(tmp_path: Path):
    """A copy of the shipped weights whose manifest names a small bundle as the one tuned on."""
    weights, tuned = tmp_path / "weights", tmp_path / "tuned.json.xz"
    shutil.copytree(SHIPPED, weights)
    write_bundle(bundle(TEXTS, TEXTS[:3], TEXTS[4:]), tuned)
    manifest = json.loads((weights / "manifest.json").read_text())
    manifest["bundle_sha256"] = file_sha256(tuned)
    (weights / "manifest.json").write_text(json.dumps(manifest))
    return weights, tuned


@pytest.mark.slow
def test_rebuilt_folder_holds_the_shipped_heads_and_the_service_embeddings(weights_built_from, tmp_path: Path):
    weights, tuned = weights_built_from
    # The same training requests, one answer pair more (the answer heads are fitted on the CPU), the texts in
    # another order and another validation split: accepted.
    recalibrated = tmp_path / "new.json.xz"
    write_bundle(bundle(TEXTS[::-1], TEXTS[:3], TEXTS[3:], answered=2), recalibrated)
    report = rebuild(weights, tuned, recalibrated, tmp_path / "out")
    assert report["embeddings"]["weights_bundle_sha256"] == file_sha256(tuned)
    assert report["bundle_sha256"] == file_sha256(recalibrated)
    vectors, heads, loaded = load_tuned(tmp_path / "out", read_bundle(recalibrated))
    shipped = load_heads(SHIPPED)
    served = SentenceEncoder.load(shipped.embedder, adapter=shipped.encoder_adapter, cache_size=0)
    np.testing.assert_allclose(np.stack([vectors[t] for t in TEXTS]), served(TEXTS), atol=2e-3)  # stored as fp16
    np.testing.assert_array_equal(heads["unsafe"].layers[0][0], shipped.request.unsafe.layers[0][0])
    np.testing.assert_array_equal(heads["category"].layers[0][1], shipped.request.category.layers[0][1])
    assert loaded["kept"] == shipped.manifest["encoder_tuning"]["kept"]


def test_other_training_rows_or_another_bundle_are_refused(weights_built_from, tmp_path: Path):
    weights, tuned = weights_built_from
    retrained = tmp_path / "retrained.json.xz"
    write_bundle(bundle(TEXTS, TEXTS[:2], TEXTS[2:]), retrained)
    with pytest.raises(RebuildError, match="trains on other requests or fewer answer pairs"):
        rebuild(weights, tuned, retrained, tmp_path / "out")
    unanswered = tmp_path / "unanswered.json.xz"  # the same requests, the one answer pair dropped
    write_bundle(bundle(TEXTS, TEXTS[:3], TEXTS[4:], answered=0), unanswered)
    with pytest.raises(RebuildError, match="fewer answer pairs"):
        rebuild(weights, tuned, unanswered, tmp_path / "out")
    with pytest.raises(RebuildError, match="not the bundle the shipped weights were built from"):
        rebuild(weights, retrained, tuned, tmp_path / "out")
    assert not (tmp_path / "out").exists()
