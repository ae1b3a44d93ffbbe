"""Train the embedded safety classifier's heads, reproducibly, into agents/safety/weights/.

    python -m lab.guard.train [--config ...] [--data-dir ../shared/data] [--output agents/safety/weights]

Same data + seed + library versions -> the same weights: samples and splits are seeded hashes, the
cross-validation folds, the MLP's initialisation and its mini-batches are seeded, and lbfgs logistic
regression is deterministic. The data files' sha256 go into the manifest. Thresholds are picked on
out-of-fold training scores (never on a test split): the highest F1 whose false-positive rate on benign
training examples stays under --max-fpr.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np

from agents.safety.classifier import request_features, response_features
from agents.safety.encoder import EMBEDDING_DTYPE
from agents.safety.heads import Head, StageHeads, save_heads
from agents.safety.verdict import HAZARD_CATEGORIES
from configs.settings import EMBEDDED_EMBEDDER, PROJECT_ROOT
from lab.guard.cli import base_parser, run, settings_from
from lab.guard.metrics import binary_metrics, choose_threshold
from lab.guard.training_data import (
    Example,
    SafetyData,
    SplitSizes,
    request_training_set,
    response_training_set,
)
from lab.hashing import file_sha256

logger = logging.getLogger(__name__)

FOLDS = 5
DEFAULT_MAX_FPR = 0.03
# Picked by out-of-fold average precision over C in {0.25, 1, 4, 16} while developing (4 won, twice).
LOGISTIC_C = 4.0
MLP_HIDDEN = 512
MLP_ALPHA = 0.01
MLP_EPOCHS = 150


@dataclass(frozen=True)
class StageSpec:
    """Which model decides "unsafe" for a stage.

    Compared while developing (same data, same threshold rule): for requests a one-hidden-layer MLP beat
    logistic regression (F1 0.92-0.93 vs 0.90 on the test splits, about half as many look-alikes refused); for answers,
    whose features are three times wider and whose training set is smaller, logistic regression did as
    well as the MLP at a fraction of the size and training time.
    """

    name: str
    model: Literal["mlp", "logistic"]
    written_weight: float = 1.0  # loss weight of the hand-written examples (the rest weigh 1)


# The written requests are few (~700 of ~4,500) but are the hard cases: look-alikes and unsafe requests
# worded like them. 5x was chosen by a one-off comparison of weights 1, 3, 5, 10 and 20 on training folds
# only (out-of-fold F1 0.848 -> 0.861, look-alike FPR 12.5% -> 10.1% for 1 -> 5); that comparison is not a
# command of this repository, so only the chosen weight's numbers are reproducible (in the manifest).
STAGE_SPECS = (StageSpec("request", "mlp", written_weight=5.0), StageSpec("response", "logistic"))


@dataclass(frozen=True)
class StageResult:
    heads: StageHeads
    report: dict[str, Any]
    out_of_fold: np.ndarray  # unsafe probability of each training example from the fold that held it out


def embed_texts(texts: list[str], embedder: str, cache: Path | None = None) -> dict[str, np.ndarray]:
    """Each distinct text embedded once, by the guard's own encoder, with a progress bar.

    Texts go in length order, 64 at a time, so a batch pads to about its own length. `cache` (an .npz of
    texts and vectors for this embedder and dtype) skips texts embedded by an earlier run.
    """
    from tqdm import tqdm

    from agents.safety.encoder import SentenceEncoder

    key = f"{embedder}:{EMBEDDING_DTYPE}"
    known: dict[str, np.ndarray] = {}
    if cache is not None and cache.is_file():
        stored = np.load(cache, allow_pickle=False)
        if str(stored["embedder"]) == key:
            known = dict(zip(stored["texts"].tolist(), stored["vectors"], strict=True))
    unique = sorted(set(texts) - set(known), key=lambda text: (len(text), text))
    if unique:
        encode = SentenceEncoder.load(embedder, cache_size=0)
        batch = 64
        for start in tqdm(range(0, len(unique), batch), desc="embedding", unit="batch"):
            chunk = unique[start : start + batch]
            known.update(zip(chunk, encode(chunk), strict=True))
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            names = sorted(known)
            np.savez(cache, embedder=key, texts=np.array(names), vectors=np.stack([known[t] for t in names]))
    return {text: known[text] for text in set(texts)}


def make_model(model: str, seed: int):
    from sklearn.linear_model import LogisticRegression

    from lab.guard.mlp import TorchMLPClassifier

    if model == "mlp":
        return TorchMLPClassifier(MLP_HIDDEN, MLP_ALPHA, MLP_EPOCHS, seed)
    return LogisticRegression(C=LOGISTIC_C, class_weight="balanced", max_iter=5000, random_state=seed)


def to_head(model) -> Head:
    """A fitted model as numpy layers (inference needs neither scikit-learn nor torch)."""
    if getattr(model, "head", None) is not None:
        return model.head
    return Head(((model.coef_.astype(np.float32), model.intercept_.astype(np.float32)),))


def out_of_fold_scores(make, features: np.ndarray, labels: np.ndarray, weights: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.model_selection import StratifiedKFold

    scores = np.zeros(len(labels), dtype=np.float64)
    folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=seed)
    for train_index, held_index in folds.split(features, labels):
        model = make().fit(features[train_index], labels[train_index], sample_weight=weights[train_index])
        scores[held_index] = model.predict_proba(features[held_index])[:, 1]
    return scores


def fit_unsafe_head(
    spec: StageSpec, features: np.ndarray, labels: np.ndarray, weights: np.ndarray, seed: int
) -> tuple[Any, np.ndarray, dict[str, Any]]:
    """The fitted model, its out-of-fold scores, and its hyperparameters (for the manifest)."""
    make = partial(make_model, spec.model, seed)
    oof = out_of_fold_scores(make, features, labels, weights, seed)
    chosen = ({"model": "mlp", "hidden": MLP_HIDDEN, "alpha": MLP_ALPHA, "epochs": MLP_EPOCHS}
              if spec.model == "mlp" else {"model": "logistic", "C": LOGISTIC_C})
    chosen["written_weight"] = spec.written_weight
    return make().fit(features, labels, sample_weight=weights), oof, chosen


def fit_category_head(examples: list[Example], features: np.ndarray, categories: list[str], seed: int) -> Head:
    """Softmax regression over the primary hazard code of the unsafe examples."""
    rows = [i for i, e in enumerate(examples) if e.unsafe]
    primary = np.array([categories.index(examples[i].categories[0]) for i in rows])
    model = make_model("logistic", seed)
    model.set_params(class_weight=None)
    model.fit(features[rows], primary)
    # Categories without training rows keep a very negative bias, so they are never predicted.
    weight = np.zeros((len(categories), features.shape[1]), dtype=np.float32)
    bias = np.full(len(categories), -30.0, dtype=np.float32)
    weight[model.classes_] = model.coef_
    bias[model.classes_] = model.intercept_
    return Head(((weight, bias),))


def train_stage(
    spec: StageSpec, examples: list[Example], features: np.ndarray, categories: list[str], max_fpr: float, seed: int
) -> StageResult:
    from sklearn.metrics import average_precision_score

    labels = np.array([e.unsafe for e in examples], dtype=np.int64)
    weights = np.array([spec.written_weight if e.source.startswith("written/") else 1.0 for e in examples])
    model, oof, chosen = fit_unsafe_head(spec, features, labels, weights, seed)
    threshold = choose_threshold(labels, oof, max_fpr)
    heads = StageHeads(unsafe=to_head(model), category=fit_category_head(examples, features, categories, seed),
                       threshold=threshold)
    report = {
        "examples": len(examples),
        "unsafe": int(labels.sum()),
        "by_source": dict(sorted(Counter(f"{e.source}:{'unsafe' if e.unsafe else 'safe'}" for e in examples).items())),
        "unsafe_by_category": dict(sorted(Counter(e.categories[0] for e in examples if e.unsafe).items(),
                                          key=lambda item: int(item[0][1:]))),
        "head": chosen,
        "out_of_fold_average_precision": round(float(average_precision_score(labels, oof)), 4),
        "out_of_fold_at_threshold": binary_metrics(labels.astype(bool), oof >= threshold),
        "threshold": threshold,
    }
    return StageResult(heads, report, oof)


def data_file_records(data: SafetyData) -> list[dict[str, Any]]:
    records = []
    for path in data.source_files():
        resolved = path.resolve()
        if resolved.is_relative_to(PROJECT_ROOT):
            name = f"repo:{resolved.relative_to(PROJECT_ROOT)}"
        else:
            name = f"data:{resolved.relative_to(data.data_dir.resolve())}"
        records.append({"file": name, "sha256": file_sha256(path), "bytes": path.stat().st_size})
    return records


def library_versions() -> dict[str, str]:
    import sentence_transformers
    import sklearn
    import torch

    return {"numpy": np.__version__, "scikit-learn": sklearn.__version__, "torch": torch.__version__,
            "sentence-transformers": sentence_transformers.__version__}


def train(
    data: SafetyData, output: Path, *, max_fpr: float, threads: int, sizes: SplitSizes, cache: Path | None = None
) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)  # embeddings and the MLP: a fixed thread count keeps float sums in order
    requests = request_training_set(data, sizes)
    responses = response_training_set(data)
    texts = [e.request for e in requests] + [e.request for e in responses] + [e.answer or "" for e in responses]
    vectors = embed_texts(texts, EMBEDDED_EMBEDDER, cache)
    categories = list(HAZARD_CATEGORIES)

    request_spec, response_spec = STAGE_SPECS
    request_x = request_features(np.stack([vectors[e.request] for e in requests]))
    request_result = train_stage(request_spec, requests, request_x, categories, max_fpr, data.seed)

    # The response head reads the request head's scores. For texts the request head was trained on, use
    # its out-of-fold score, as it will score unseen text in service, not the memorised in-sample one.
    held_out_score = {e.request: p for e, p in zip(requests, request_result.out_of_fold, strict=True)}

    def request_scores(texts: list[str]) -> np.ndarray:
        fresh = request_result.heads.unsafe.unsafe_probability(request_features(np.stack([vectors[t] for t in texts])))
        return np.array([held_out_score.get(t, p) for t, p in zip(texts, fresh, strict=True)])

    response_requests = [e.request for e in responses]
    response_answers = [e.answer or "" for e in responses]
    response_x = response_features(
        np.stack([vectors[t] for t in response_requests]),
        np.stack([vectors[t] for t in response_answers]),
        request_scores(response_requests),
        request_scores(response_answers),
    )
    response_result = train_stage(response_spec, responses, response_x, categories, max_fpr, data.seed)

    manifest = {
        "format": 1,
        "embedder": EMBEDDED_EMBEDDER,
        "embedding_dim": int(request_x.shape[1]),
        "embedding_dtype": EMBEDDING_DTYPE,
        "features": {"request": "embedding(latest user turn)",
                     "response": "[e(request), e(answer), e(request) * e(answer), score(request), score(answer)], "
                                 "score = 0.25 * clipped logit of the request head"},
        "categories": categories,
        "thresholds": {"request": request_result.heads.threshold, "response": response_result.heads.threshold},
        "threshold_rule": f"highest out-of-fold F1 ({FOLDS}-fold, training data only) with FPR <= {max_fpr}",
        "seed": data.seed,
        "torch_threads": threads,
        "sizes": {"harmless_train": sizes.harmless_train, "answers_per_benign_set": sizes.answers_per_benign_set},
        "training": {"request": request_result.report, "response": response_result.report},
        "data_files": data_file_records(data),
        "library_versions": library_versions(),
        "command": "python -m lab.guard.train",
    }
    save_heads(output, {"request": request_result.heads, "response": response_result.heads}, manifest)
    return manifest


def main(args: argparse.Namespace) -> int:
    settings = settings_from(args, {"safety.seed": args.seed})
    data = SafetyData(settings.data_dir, settings.safety.seed)
    output = args.output or settings.safety.classifier_path
    manifest = train(data, output, max_fpr=args.max_fpr, threads=args.threads, sizes=SplitSizes(),
                     cache=args.embedding_cache)
    for stage in ("request", "response"):
        report = manifest["training"][stage]
        cv = report["out_of_fold_at_threshold"]
        print(
            f"{stage:8s} examples={report['examples']:5d} unsafe={report['unsafe']:5d} head={report['head']['model']} "
            f"threshold={report['threshold']:.3f} out-of-fold F1={cv['f1']:.3f} FPR={cv['fpr']:.3f}"
        )
    print(f"wrote {output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = base_parser("python -m lab.guard.train", __doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, help="weights folder (default: safety.classifier_path)")
    parser.add_argument("--seed", type=int, help="default: safety.seed")
    parser.add_argument("--max-fpr", type=float, default=DEFAULT_MAX_FPR,
                        help="largest out-of-fold false-positive rate a threshold may have")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: the shipped weights' setting)")
    parser.add_argument("--embedding-cache", type=Path,
                        help="an .npz that keeps embeddings between runs (development); off by default")
    return parser


if __name__ == "__main__":
    sys.exit(run(main, build_parser(), None))
