"""Train the embedded safety classifier's heads, reproducibly, into agents/safety/weights/.

    python -m lab.guard.train [--config ...] [--data-dir ../shared/data] [--output agents/safety/weights]
                              [--mix lab/guard/mix.yaml] [--embedding-cache var/guard/embeddings.npz]

Same data + mix + seed + library versions -> the same weights: samples and splits are seeded hashes, the
cross-validation folds, the MLP's initialisation and its mini-batches are seeded, and lbfgs logistic
regression is deterministic. The data files' sha256 go into the manifest. Thresholds are calibrated on
validation rows only (lab.guard.splits.calibration_sets; never on training data): the highest F1 whose
false-positive rate there stays under --max-fpr. The manifest records every validation set's metrics at
that threshold, which tests/agents/safety checks the shipped weights against.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from collections import Counter
from dataclasses import dataclass, replace
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
from lab.guard.sources import MIX_FILE, TECHNICAL_QUESTIONS_FILE, Mix, extra_files, load_mix
from lab.guard.splits import (
    calibration_sets,
    request_training_set,
    request_validation_sets,
    response_training_set,
    response_validation_sets,
)
from lab.guard.training_data import Example, SafetyData, SplitSizes
from lab.hashing import file_sha256

logger = logging.getLogger(__name__)

FOLDS = 5
# The calibration sets hold hard look-alikes (HateCheck non-hateful, CoCoNot contrast); 5% is issue 20's target.
DEFAULT_MAX_FPR = 0.05
DEFAULT_EMBEDDING_CACHE = PROJECT_ROOT / "var" / "guard" / "embeddings.npz"
# Picked by out-of-fold average precision over C in {0.25, 1, 4, 16} while developing (4 won, twice).
LOGISTIC_C = 4.0
MLP_HIDDEN = 512
MLP_ALPHA = 0.01
# 40 epochs over the ~21,600-row mix: calibration-pool F1 0.821 (10 epochs 0.781, 100 epochs 0.828 at 2.5x the time).
MLP_EPOCHS = 40


@dataclass(frozen=True)
class StageSpec:
    """Which model decides "unsafe" for a stage.

    Compared while developing (same data, same threshold rule): for requests a one-hidden-layer MLP beat
    logistic regression (F1 0.92-0.93 vs 0.90 on the earlier test splits; on the issue-20 mix, calibration-pool
    F1 0.82 vs 0.58 at 5% FPR); for answers,
    whose features are three times wider and whose training set is smaller, logistic regression did as
    well as the MLP at a fraction of the size and training time.
    """

    name: str
    model: Literal["mlp", "logistic"]
    written_weight: float = 1.0  # loss weight of the hand-written examples (the rest weigh 1)


# The written requests (now with the technical questions' train part, ~900 of ~21,600) are the hard cases:
# look-alikes and unsafe requests worded like them. 5x was chosen, on the earlier ~4,500-row data, by a one-off comparison of weights 1, 3, 5, 10 and 20 on training folds
# only (out-of-fold F1 0.848 -> 0.861, look-alike FPR 12.5% -> 10.1% for 1 -> 5); that comparison is not a
# command of this repository, so only the chosen weight's numbers are reproducible (in the manifest).
STAGE_SPECS = (StageSpec("request", "mlp", written_weight=5.0), StageSpec("response", "logistic"))


@dataclass(frozen=True)
class StageResult:
    heads: StageHeads
    report: dict[str, Any]
    out_of_fold: np.ndarray  # unsafe probability of each training example from the fold that held it out


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def embed_texts(texts: list[str], embedder: str, cache: Path | None = None) -> dict[str, np.ndarray]:
    """Each distinct text embedded once, by the guard's own encoder, with a progress bar.

    Texts go in length order, 16 at a time, so a batch pads to about its own length. `cache` (an .npz of
    sha256(text) keys and vectors for this embedder and dtype, git-ignored under var/) skips texts embedded
    by an earlier run: ~35,000 texts take 15-30 minutes on two busy cores.
    """
    from tqdm import tqdm

    from agents.safety.encoder import SentenceEncoder

    key = f"{embedder}:{EMBEDDING_DTYPE}"
    known: dict[str, np.ndarray] = {}
    if cache is not None and cache.is_file():
        stored = np.load(cache, allow_pickle=False)
        if str(stored["embedder"]) == key:
            known = dict(zip(stored["keys"].tolist(), stored["vectors"], strict=True))
    keys = {text: text_key(text) for text in set(texts)}
    unique = sorted((text for text, digest in keys.items() if digest not in known), key=lambda text: (len(text), text))
    if unique:
        encode = SentenceEncoder.load(embedder, cache_size=0)
        batch = 16
        for start in tqdm(range(0, len(unique), batch), desc="embedding", unit="batch"):
            chunk = unique[start : start + batch]
            known.update(zip([keys[text] for text in chunk], encode(chunk), strict=True))
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            names = sorted(known)
            np.savez(cache, embedder=key, keys=np.array(names), vectors=np.stack([known[k] for k in names]))
    return {text: known[digest] for text, digest in keys.items()}


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
    spec: StageSpec, features: np.ndarray, labels: np.ndarray, weights: np.ndarray, seed: int, out_of_fold: bool = True
) -> tuple[Any, np.ndarray | None, dict[str, Any]]:
    """The fitted model, its out-of-fold scores (when asked for), and its hyperparameters (for the manifest)."""
    make = partial(make_model, spec.model, seed)
    oof = out_of_fold_scores(make, features, labels, weights, seed) if out_of_fold else None
    chosen = ({"model": "mlp", "hidden": MLP_HIDDEN, "alpha": MLP_ALPHA, "epochs": MLP_EPOCHS}
              if spec.model == "mlp" else {"model": "logistic", "C": LOGISTIC_C})
    chosen["written_weight"] = spec.written_weight
    return make().fit(features, labels, sample_weight=weights), oof, chosen


def fit_category_head(examples: list[Example], features: np.ndarray, categories: list[str], seed: int) -> Head:
    """Softmax regression over the primary hazard code of the unsafe examples."""
    rows = [i for i, e in enumerate(examples) if e.unsafe and e.categories]  # unmapped hazards: no category
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


def train_stage(spec: StageSpec, examples: list[Example], features: np.ndarray, categories: list[str],
                seed: int) -> StageResult:
    """The stage's heads (threshold still 0.5: `calibrate` sets it) and its training report."""
    from sklearn.metrics import average_precision_score

    labels = np.array([e.unsafe for e in examples], dtype=np.int64)
    weights = np.array([spec.written_weight if e.source.startswith("written/") else 1.0 for e in examples])
    model, oof, chosen = fit_unsafe_head(spec, features, labels, weights, seed)
    heads = StageHeads(unsafe=to_head(model), category=fit_category_head(examples, features, categories, seed),
                       threshold=0.5)
    by_category = Counter(e.categories[0] if e.categories else "unmapped" for e in examples if e.unsafe)
    report = {
        "examples": len(examples),
        "unsafe": int(labels.sum()),
        "by_source": dict(sorted(Counter(f"{e.source}:{'unsafe' if e.unsafe else 'safe'}" for e in examples).items())),
        "unsafe_by_category": dict(sorted(by_category.items(), key=lambda item: (len(item[0]), item[0]))),
        "head": chosen,
        "out_of_fold_average_precision": round(float(average_precision_score(labels, oof)), 4),
    }
    return StageResult(heads, report, oof)


def calibrate(scores: dict[str, np.ndarray], truth: dict[str, np.ndarray], calibration: list[str],
              max_fpr: float) -> tuple[float, dict[str, Any]]:
    """The threshold chosen on the calibration sets' scores, and every validation set's metrics at it."""
    pooled_truth = np.concatenate([truth[name] for name in calibration])
    pooled_scores = np.concatenate([scores[name] for name in calibration])
    threshold = choose_threshold(pooled_truth, pooled_scores, max_fpr)
    report = {name: binary_metrics(truth[name], scores[name] >= threshold) for name in scores}
    report["calibration_pool"] = binary_metrics(pooled_truth, pooled_scores >= threshold)
    return threshold, report


def data_file_records(data: SafetyData, mix: Mix) -> list[dict[str, Any]]:
    records = []
    for path in [*data.source_files(), *extra_files(data.data_dir, mix), TECHNICAL_QUESTIONS_FILE, MIX_FILE]:
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


def stack(vectors: dict[str, np.ndarray], texts: list[str]) -> np.ndarray:
    return np.stack([vectors[text] for text in texts])


def truth_of(sets: dict[str, list[Example]]) -> dict[str, np.ndarray]:
    return {name: np.array([e.unsafe for e in rows], dtype=bool) for name, rows in sets.items()}


def train(
    data: SafetyData, mix: Mix, output: Path, *, max_fpr: float, threads: int, sizes: SplitSizes,
    cache: Path | None = None,
) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)  # embeddings and the MLP: a fixed thread count keeps float sums in order
    requests = request_training_set(data, mix, sizes)
    responses = response_training_set(data, mix)
    request_val = request_validation_sets(data, mix, sizes)
    response_val = response_validation_sets(data, mix)
    texts = [e.request for e in requests] + [e.request for rows in request_val.values() for e in rows]
    texts += [t for e in responses + [e for rows in response_val.values() for e in rows] for t in (e.request, e.answer or "")]
    vectors = embed_texts(texts, EMBEDDED_EMBEDDER, cache)
    categories = list(HAZARD_CATEGORIES)

    request_spec, response_spec = STAGE_SPECS
    request_x = request_features(stack(vectors, [e.request for e in requests]))
    request_result = train_stage(request_spec, requests, request_x, categories, data.seed)
    request_head = request_result.heads.unsafe
    request_threshold, request_validation = calibrate(
        {name: request_head.unsafe_probability(request_features(stack(vectors, [e.request for e in rows])))
         for name, rows in request_val.items()},
        truth_of(request_val), calibration_sets(mix, "request"), max_fpr)

    # The response head reads the request head's scores. For texts the request head was trained on, use
    # its out-of-fold score, as it will score unseen text in service, not the memorised in-sample one.
    held_out_score = {e.request: p for e, p in zip(requests, request_result.out_of_fold, strict=True)}

    def features_of(rows: list[Example], held_out: dict[str, float]) -> np.ndarray:
        asked, answers = [e.request for e in rows], [e.answer or "" for e in rows]

        def scores(texts: list[str]) -> np.ndarray:
            fresh = request_head.unsafe_probability(request_features(stack(vectors, texts)))
            return np.array([held_out.get(t, p) for t, p in zip(texts, fresh, strict=True)])

        return response_features(stack(vectors, asked), stack(vectors, answers), scores(asked), scores(answers))

    response_x = features_of(responses, held_out_score)
    response_result = train_stage(response_spec, responses, response_x, categories, data.seed)
    response_threshold, response_validation = calibrate(
        {name: response_result.heads.unsafe.unsafe_probability(features_of(rows, {}))
         for name, rows in response_val.items()},
        truth_of(response_val), calibration_sets(mix, "response"), max_fpr)

    heads = {"request": replace(request_result.heads, threshold=request_threshold),
             "response": replace(response_result.heads, threshold=response_threshold)}
    manifest = {
        "format": 2,
        "embedder": EMBEDDED_EMBEDDER,
        "embedding_dim": int(request_x.shape[1]),
        "embedding_dtype": EMBEDDING_DTYPE,
        "features": {"request": "embedding(latest user turn)",
                     "response": "[e(request), e(answer), e(request) * e(answer), score(request), score(answer)], "
                                 "score = 0.25 * clipped logit of the request head"},
        "categories": categories,
        "thresholds": {"request": request_threshold, "response": response_threshold},
        "threshold_rule": f"highest F1 with FPR <= {max_fpr} on the calibration validation sets "
                          "(lab.guard.splits.calibration_sets), never on training data",
        "calibration_sets": {stage: calibration_sets(mix, stage) for stage in ("request", "response")},
        "seed": data.seed,
        "mix": {"file": str(MIX_FILE.relative_to(PROJECT_ROOT)), "files": mix.files, "seed": mix.seed},
        "torch_threads": threads,
        "sizes": {"harmless_train": sizes.harmless_train, "harmless_test": sizes.harmless_test,
                  "answers_per_benign_set": sizes.answers_per_benign_set},
        "training": {"request": request_result.report, "response": response_result.report},
        # Metrics of every validation set at the shipped thresholds, from batched embeddings.
        "validation": {"request": request_validation, "response": response_validation},
        "data_files": data_file_records(data, mix),
        "library_versions": library_versions(),
        "command": "python -m lab.guard.train",
    }
    save_heads(output, heads, manifest)
    return manifest


def main(args: argparse.Namespace) -> int:
    settings = settings_from(args, {"safety.seed": args.seed})
    data = SafetyData(settings.data_dir, settings.safety.seed)
    output = args.output or settings.safety.classifier_path
    manifest = train(data, load_mix(args.mix), output, max_fpr=args.max_fpr, threads=args.threads, sizes=SplitSizes(),
                     cache=args.embedding_cache)
    for stage in ("request", "response"):
        report, pool = manifest["training"][stage], manifest["validation"][stage]["calibration_pool"]
        print(
            f"{stage:8s} examples={report['examples']:5d} unsafe={report['unsafe']:5d} head={report['head']['model']} "
            f"threshold={manifest['thresholds'][stage]:.3f} calibration F1={pool['f1']:.3f} FPR={pool['fpr']:.3f}"
        )
    print(f"wrote {output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = base_parser("python -m lab.guard.train", __doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, help="weights folder (default: safety.classifier_path)")
    parser.add_argument("--seed", type=int, help="default: safety.seed")
    parser.add_argument("--max-fpr", type=float, default=DEFAULT_MAX_FPR,
                        help="largest false-positive rate on the calibration sets a threshold may have")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: the shipped weights' setting)")
    parser.add_argument("--embedding-cache", type=Path, default=DEFAULT_EMBEDDING_CACHE,
                        help="an .npz that keeps embeddings between runs (git-ignored)")
    parser.add_argument("--mix", type=Path, default=MIX_FILE, help="which sources train and which validate")
    return parser


if __name__ == "__main__":
    sys.exit(run(main, build_parser(), None))
