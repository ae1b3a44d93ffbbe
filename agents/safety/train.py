"""Train the embedded safety classifier's heads, reproducibly, into agents/safety/weights/.

    python -m agents.safety.train [--config ...] [--data-dir ../shared/data] [--output agents/safety/weights]

Same data + seed + library versions -> the same weights: samples and splits are seeded hashes, the
cross-validation folds are seeded, and lbfgs logistic regression is deterministic. Thresholds are picked
on out-of-fold training scores (never on a test split): the highest F1 whose false-positive rate on
benign training examples stays under --max-fpr.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.safety.classifier import request_features, response_features
from agents.safety.cli import base_parser, run, settings_from
from agents.safety.heads import LinearHead, StageHeads, save_heads
from agents.safety.metrics import binary_metrics, choose_threshold
from agents.safety.training_data import (
    Example,
    SafetyData,
    SplitSizes,
    request_training_set,
    response_training_set,
    sha256_file,
)
from agents.safety.verdict import HAZARD_CATEGORIES
from configs.settings import EMBEDDED_EMBEDDER, PROJECT_ROOT

logger = logging.getLogger(__name__)

REGULARIZATION_GRID = (0.25, 1.0, 4.0, 16.0)
FOLDS = 5
DEFAULT_MAX_FPR = 0.02


@dataclass(frozen=True)
class StageResult:
    heads: StageHeads
    report: dict[str, Any]


def embed_texts(texts: list[str], embedder: str, threads: int) -> dict[str, np.ndarray]:
    """Each distinct text embedded once, in a fixed order, with a progress bar."""
    import torch
    from tqdm import tqdm

    from agents.safety.classifier import sentence_encoder

    torch.set_num_threads(threads)
    encode = sentence_encoder(embedder)
    unique = sorted(set(texts))
    vectors = []
    batch = 256
    for start in tqdm(range(0, len(unique), batch), desc="embedding", unit="batch"):
        vectors.append(encode(unique[start : start + batch]))
    return dict(zip(unique, np.concatenate(vectors), strict=True))


def fit_logistic(features: np.ndarray, labels: np.ndarray, regularization: float, seed: int):
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=regularization, class_weight="balanced", max_iter=5000, random_state=seed)
    return model.fit(features, labels)


def out_of_fold_scores(features: np.ndarray, labels: np.ndarray, regularization: float, seed: int) -> np.ndarray:
    from sklearn.model_selection import StratifiedKFold

    scores = np.zeros(len(labels), dtype=np.float64)
    folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=seed)
    for train_index, held_index in folds.split(features, labels):
        model = fit_logistic(features[train_index], labels[train_index], regularization, seed)
        scores[held_index] = model.predict_proba(features[held_index])[:, 1]
    return scores


def train_stage(
    name: str, examples: list[Example], features: np.ndarray, categories: list[str], max_fpr: float, seed: int
) -> StageResult:
    from sklearn.metrics import average_precision_score

    labels = np.array([e.unsafe for e in examples], dtype=np.int64)
    # Pick the regularization by out-of-fold average precision (threshold-free), then the threshold.
    candidates = {}
    for regularization in REGULARIZATION_GRID:
        oof = out_of_fold_scores(features, labels, regularization, seed)
        candidates[regularization] = (average_precision_score(labels, oof), oof)
        logger.info("%s C=%g out-of-fold AP=%.4f", name, regularization, candidates[regularization][0])
    regularization = max(candidates, key=lambda c: (candidates[c][0], -c))
    oof = candidates[regularization][1]
    threshold = choose_threshold(labels, oof, max_fpr)
    unsafe_model = fit_logistic(features, labels, regularization, seed)

    unsafe_rows = [i for i, e in enumerate(examples) if e.unsafe]
    primary = np.array([categories.index(examples[i].categories[0]) for i in unsafe_rows])
    from sklearn.linear_model import LogisticRegression

    category_model = LogisticRegression(C=regularization, max_iter=5000, random_state=seed)
    category_model.fit(features[unsafe_rows], primary)
    # Categories without training rows keep a very negative bias, so they are never predicted.
    category_weight = np.zeros((len(categories), features.shape[1]), dtype=np.float32)
    category_bias = np.full(len(categories), -30.0, dtype=np.float32)
    category_weight[category_model.classes_] = category_model.coef_
    category_bias[category_model.classes_] = category_model.intercept_

    heads = StageHeads(
        unsafe=LinearHead(unsafe_model.coef_.astype(np.float32), unsafe_model.intercept_.astype(np.float32)),
        category=LinearHead(category_weight, category_bias),
        threshold=threshold,
    )
    report = {
        "examples": len(examples),
        "unsafe": int(labels.sum()),
        "by_source": dict(sorted(Counter(f"{e.source}:{'unsafe' if e.unsafe else 'safe'}" for e in examples).items())),
        "unsafe_by_category": dict(sorted(Counter(examples[i].categories[0] for i in unsafe_rows).items())),
        "regularization_C": regularization,
        "out_of_fold_average_precision": round(float(candidates[regularization][0]), 4),
        "out_of_fold_at_threshold": binary_metrics(labels.astype(bool), oof >= threshold),
        "threshold": threshold,
    }
    return StageResult(heads, report)


def data_file_records(data: SafetyData) -> list[dict[str, Any]]:
    records = []
    for path in data.source_files():
        resolved = path.resolve()
        if resolved.is_relative_to(PROJECT_ROOT):
            name = f"repo:{resolved.relative_to(PROJECT_ROOT)}"
        else:
            name = f"data:{resolved.relative_to(data.data_dir.resolve())}"
        records.append({"file": name, "sha256": sha256_file(path), "bytes": path.stat().st_size})
    return records


def library_versions() -> dict[str, str]:
    import sentence_transformers
    import sklearn
    import torch

    return {"numpy": np.__version__, "scikit-learn": sklearn.__version__, "torch": torch.__version__,
            "sentence-transformers": sentence_transformers.__version__}


def train(data: SafetyData, output: Path, *, max_fpr: float, threads: int, sizes: SplitSizes) -> dict[str, Any]:
    requests = request_training_set(data, sizes)
    responses = response_training_set(data, sizes)
    texts = [e.request for e in requests] + [e.request for e in responses] + [e.answer or "" for e in responses]
    vectors = embed_texts(texts, EMBEDDED_EMBEDDER, threads)
    categories = list(HAZARD_CATEGORIES)

    request_x = request_features(np.stack([vectors[e.request] for e in requests]))
    response_x = response_features(
        np.stack([vectors[e.request] for e in responses]), np.stack([vectors[e.answer or ""] for e in responses])
    )
    request_result = train_stage("request", requests, request_x, categories, max_fpr, data.seed)
    response_result = train_stage("response", responses, response_x, categories, max_fpr, data.seed)

    manifest = {
        "format": 1,
        "embedder": EMBEDDED_EMBEDDER,
        "embedding_dim": int(request_x.shape[1]),
        "features": {"request": "embedding(latest user turn)",
                     "response": "[embedding(request), embedding(answer), embedding(request) * embedding(answer)]"},
        "categories": categories,
        "thresholds": {"request": request_result.heads.threshold, "response": response_result.heads.threshold},
        "threshold_rule": f"highest out-of-fold F1 ({FOLDS}-fold, training data only) with FPR <= {max_fpr}",
        "seed": data.seed,
        "sizes": {"harmless_train": sizes.harmless_train, "answers_per_benign_set": sizes.answers_per_benign_set},
        "training": {"request": request_result.report, "response": response_result.report},
        "data_files": data_file_records(data),
        "library_versions": library_versions(),
        "command": "python -m agents.safety.train",
    }
    save_heads(output, {"request": request_result.heads, "response": response_result.heads}, manifest)
    return manifest


def main(args: argparse.Namespace) -> int:
    settings = settings_from(args, {"safety.seed": args.seed})
    data = SafetyData(settings.safety.data_dir, settings.safety.seed)
    output = args.output or settings.safety.classifier_path
    manifest = train(data, output, max_fpr=args.max_fpr, threads=args.threads, sizes=SplitSizes())
    for stage in ("request", "response"):
        report = manifest["training"][stage]
        cv = report["out_of_fold_at_threshold"]
        print(
            f"{stage:8s} examples={report['examples']:5d} unsafe={report['unsafe']:5d} C={report['regularization_C']:g} "
            f"threshold={report['threshold']:.3f} out-of-fold F1={cv['f1']:.3f} FPR={cv['fpr']:.3f}"
        )
    print(f"wrote {output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, help="weights folder (default: safety.classifier_path)")
    parser.add_argument("--seed", type=int, help="default: safety.seed")
    parser.add_argument("--max-fpr", type=float, default=DEFAULT_MAX_FPR,
                        help="largest out-of-fold false-positive rate a threshold may have")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for embedding (1: bit-stable)")
    return parser


if __name__ == "__main__":
    sys.exit(run(main, build_parser(), None))
