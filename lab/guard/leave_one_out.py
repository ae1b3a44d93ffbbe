"""Leave-one-source-out: the request head retrained without one safety-extra source, then tested on all of it.

Training on everything else and testing on a source the guard has never seen says how it does on a new
distribution, which a held-out split of a trained-on source cannot. The embeddings are the frozen
encoder's (cached under var/, so each fold is one MLP fit); each fold's threshold is calibrated on the
calibration sets without the left-out source, so nothing of it is seen before the test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from agents.safety.classifier import request_features
from configs.settings import EMBEDDED_EMBEDDER
from lab.guard.metrics import binary_metrics, pooled_metrics
from lab.guard.sources import Mix
from lab.guard.splits import calibration_sets, leave_one_out_set, request_validation_sets
from lab.guard.train import STAGE_SPECS, calibrate, embed_texts, fit_unsafe_head, stack, to_head, truth_of
from lab.guard.training_data import SafetyData, SplitSizes


def leave_one_source_out(data: SafetyData, mix: Mix, sizes: SplitSizes, max_fpr: float,
                         cache: Path | None) -> dict[str, Any]:
    spec = STAGE_SPECS[0]
    validation = request_validation_sets(data, mix, sizes)
    folds = {source: leave_one_out_set(data, mix, sizes, source) for source in mix.leave_one_out}
    texts = [e.request for rows in validation.values() for e in rows]
    texts += [e.request for training, test in folds.values() for e in training + test]
    vectors = embed_texts(texts, EMBEDDED_EMBEDDER, cache)
    report: dict[str, Any] = {}
    for source, (training, test) in folds.items():
        labels = np.array([e.unsafe for e in training], dtype=np.int64)
        weights = np.array([spec.written_weight if e.source.startswith("written/") else 1.0 for e in training])
        model, _, _ = fit_unsafe_head(spec, request_features(stack(vectors, [e.request for e in training])),
                                      labels, weights, data.seed, out_of_fold=False)
        head = to_head(model)
        calibration = [name for name in calibration_sets(mix, "request") if name.split("/", 1)[0] != source]
        kept = {name: validation[name] for name in calibration}
        threshold, _ = calibrate(
            {name: head.unsafe_probability(request_features(stack(vectors, [e.request for e in rows])))
             for name, rows in kept.items()},
            truth_of(kept), calibration, max_fpr)
        scores = head.unsafe_probability(request_features(stack(vectors, [e.request for e in test])))
        truth = np.array([e.unsafe for e in test], dtype=bool)
        report[source] = {"training_rows": len(training), "test_rows": len(test), "test_unsafe": int(truth.sum()),
                          "threshold": threshold, **binary_metrics(truth, scores >= threshold)}
    report["union"] = pooled_metrics(list(report.values()))
    return report
