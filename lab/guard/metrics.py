"""Binary detection metrics and the threshold rule, shared by training and evaluation."""

from __future__ import annotations

import numpy as np


def binary_metrics(truth: np.ndarray, flagged: np.ndarray) -> dict[str, float | int]:
    """Precision, recall, F1 and false-positive rate of `flagged` (unsafe is the positive class)."""
    truth, flagged = np.asarray(truth, dtype=bool), np.asarray(flagged, dtype=bool)
    return metrics_from_counts(int(np.sum(truth & flagged)), int(np.sum(~truth & flagged)),
                               int(np.sum(truth & ~flagged)), int(np.sum(~truth & ~flagged)))


def metrics_from_counts(tp: int, fp: int, fn: int, tn: int) -> dict[str, float | int]:
    """The same figures from confusion counts (pooling several sets: add their counts)."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    fpr = fp / (fp + tn) if fp + tn else 0.0
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "fpr": round(fpr, 4),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


def pooled_metrics(results: list[dict[str, float | int]]) -> dict[str, float | int]:
    return metrics_from_counts(*(int(sum(r[k] for r in results)) for k in ("tp", "fp", "fn", "tn")))


def choose_threshold(truth: np.ndarray, scores: np.ndarray, max_fpr: float) -> float:
    """The score cut with the best F1 among those whose false-positive rate is at most `max_fpr`."""
    truth = np.asarray(truth, dtype=bool)
    best_threshold, best_f1 = 1.0, -1.0
    for threshold in np.unique(np.round(scores, 4)):
        result = binary_metrics(truth, scores >= threshold)
        if result["fpr"] <= max_fpr and result["f1"] > best_f1:
            best_threshold, best_f1 = float(threshold), float(result["f1"])
    return round(best_threshold, 4)


def ranking_auc(truth: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC of the scores: whether a set is separable at any threshold (0.5 is chance); None with one class."""
    truth = np.asarray(truth, dtype=bool)
    if truth.all() or not truth.any():
        return None
    from sklearn.metrics import roc_auc_score

    return round(float(roc_auc_score(truth, scores)), 4)
