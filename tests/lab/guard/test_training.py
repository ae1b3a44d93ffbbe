"""Training data splits, the threshold rule, and that training reproduces the shipped classifier."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agents.safety.heads import load_heads
from configs.settings import load_settings
from lab.guard.metrics import binary_metrics, choose_threshold
from lab.guard.train import DEFAULT_MAX_FPR, data_file_records, train
from lab.guard.training_data import (
    SplitSizes,
    is_refusal,
    normalize,
    request_test_sets,
    request_training_set,
    response_test_sets,
    response_training_set,
)

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


def test_test_splits_never_overlap_training(safety_data):
    sizes = SplitSizes()
    train_requests = {normalize(e.request) for e in request_training_set(safety_data, sizes)}
    for name, rows in request_test_sets(safety_data, sizes).items():
        leaked = [e.request for e in rows if normalize(e.request) in train_requests]
        assert not leaked, f"{name} shares {len(leaked)} rows with training, e.g. {leaked[:2]}"
    train_answers = {normalize(e.answer or "") for e in response_training_set(safety_data)}
    for name, rows in response_test_sets(safety_data).items():
        if name.startswith("refusals"):
            continue  # written refusals are their own held-out list; the requests are held out
        leaked = [e.answer for e in rows if normalize(e.answer or "") in train_answers]
        assert not leaked, f"{name} shares {len(leaked)} answers with training"


def test_shipped_manifest_matches_the_data_it_was_trained_on(safety_data):
    manifest = json.loads((SHIPPED / "manifest.json").read_text())
    assert manifest["data_files"] == data_file_records(safety_data)
    assert set(manifest["thresholds"]) == {"request", "response"}
    heads = load_heads(SHIPPED)
    assert heads.request.unsafe.layers[0][0].shape[1] == manifest["embedding_dim"]


@pytest.mark.slow
def test_training_reproduces_the_shipped_classifier(safety_data, tmp_path: Path):
    """Retrain from scratch (embeddings included) and compare with what is in the repository."""
    manifest = train(safety_data, tmp_path, max_fpr=DEFAULT_MAX_FPR, threads=1, sizes=SplitSizes())
    shipped = json.loads((SHIPPED / "manifest.json").read_text())
    for stage in ("request", "response"):
        assert manifest["thresholds"][stage] == pytest.approx(shipped["thresholds"][stage], abs=0.02)
        ours, theirs = manifest["training"][stage], shipped["training"][stage]
        assert ours["examples"] == theirs["examples"] and ours["head"] == theirs["head"]
        assert ours["out_of_fold_at_threshold"]["f1"] == pytest.approx(theirs["out_of_fold_at_threshold"]["f1"], abs=0.01)
    # Same shapes; the weights themselves are compared through the metrics above: the encoder embeds in bf16,
    # whose CPU kernels round differently with and without AVX512-BF16, so heads retrained on another CPU
    # differ in their weights (up to 0.37 seen) while their thresholds and F1 agree.
    new, old = load_heads(tmp_path), load_heads(SHIPPED)
    for stage in ("request", "response"):
        for kind in ("unsafe", "category"):
            for (w_new, _), (w_old, _) in zip(getattr(getattr(new, stage), kind).layers,
                                              getattr(getattr(old, stage), kind).layers, strict=True):
                assert w_new.shape == w_old.shape
