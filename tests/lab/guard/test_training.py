"""Training data splits, the threshold rule, and that training reproduces the shipped classifier."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agents.safety.heads import load_heads
from configs.settings import load_settings
from lab.guard.metrics import binary_metrics, choose_threshold
from lab.guard.sources import load_mix
from lab.guard.train import DEFAULT_EMBEDDING_CACHE, DEFAULT_MAX_FPR, data_file_records, train
from lab.guard.training_data import SplitSizes, is_refusal

SHIPPED = load_settings().safety.classifier_path


def test_binary_metrics_and_threshold_rule():
    truth = np.array([1, 1, 1, 0, 0, 0, 0, 0], dtype=bool)
    scores = np.array([0.9, 0.8, 0.4, 0.7, 0.3, 0.2, 0.1, 0.05])
    assert binary_metrics(truth, scores >= 0.5) == {
        "precision": 0.6667, "recall": 0.6667, "f1": 0.6667, "fpr": 0.2, "tp": 2, "fp": 1, "fn": 1, "tn": 4}
    assert choose_threshold(truth, scores, max_fpr=0.0) == 0.8  # no false positive allowed
    assert choose_threshold(truth, scores, max_fpr=0.2) == 0.4  # one allowed: all three found


def test_refusal_marker_check():
    assert is_refusal("I’m sorry, but I can't help with that.")
    assert is_refusal("As an AI, I will not do this.")
    assert not is_refusal("Sure! Step 1: gather the materials.")


def test_shipped_manifest_matches_the_data_it_was_trained_on(safety_data):
    manifest = json.loads((SHIPPED / "manifest.json").read_text())
    assert manifest["data_files"] == data_file_records(safety_data, load_mix())
    assert set(manifest["thresholds"]) == {"request", "response"}
    heads = load_heads(SHIPPED)
    assert heads.request.unsafe.layers[0][0].shape[1] == manifest["embedding_dim"]


@pytest.mark.slow
def test_training_reproduces_the_shipped_classifier(safety_data, tmp_path: Path):
    """Retrain and compare with what is in the repository.

    Embeddings come from the git-ignored cache when a developer has one; a fresh checkout (CI) embeds all
    ~35,000 texts first, which is most of this test's time.
    """
    manifest = train(safety_data, load_mix(), tmp_path, max_fpr=DEFAULT_MAX_FPR, threads=1, sizes=SplitSizes(),
                     cache=DEFAULT_EMBEDDING_CACHE)
    shipped = json.loads((SHIPPED / "manifest.json").read_text())
    for stage in ("request", "response"):
        assert manifest["thresholds"][stage] == pytest.approx(shipped["thresholds"][stage], abs=0.02)
        ours, theirs = manifest["training"][stage], shipped["training"][stage]
        assert ours["examples"] == theirs["examples"] and ours["head"] == theirs["head"]
        ours_pool, theirs_pool = (m["validation"][stage]["calibration_pool"] for m in (manifest, shipped))
        assert ours_pool["f1"] == pytest.approx(theirs_pool["f1"], abs=0.01)
    new, old = load_heads(tmp_path), load_heads(SHIPPED)
    for stage in ("request", "response"):
        for kind in ("unsafe", "category"):
            for (w_new, _), (w_old, _) in zip(getattr(getattr(new, stage), kind).layers,
                                              getattr(getattr(old, stage), kind).layers, strict=True):
                assert w_new.shape == w_old.shape
