"""Assemble the embedded safety classifier from a tuned encoder, reproducibly, into agents/safety/weights/.

    python -m lab.guard.train --tuned DIR [--bundle var/guard/tuning_bundle.json.xz] [--config ...]
                              [--data-dir ../shared/data] [--output agents/safety/weights] [--mix lab/guard/mix.yaml]

The guard is trained in two steps. On a GPU, `python -m lab.guard.tune_encoder` fine-tunes MiniLM (a LoRA
adapter) together with the request heads on the bundle of `python -m lab.guard.tuning_bundle`, and writes the
adapter, the heads and the embeddings of every bundle text (DIR). Here, on the CPU: the bundle is rebuilt from
the data and must equal the one that was tuned on; the request threshold is calibrated on validation rows
only (lab.guard.splits.calibration_sets; never on training data): the highest F1 whose false-positive rate
there stays under --max-fpr, and so is the answer threshold; the answer heads (is it unsafe, which hazard:
logistic regressions, deterministic lbfgs) are fitted here on the tuned embeddings of every answer pair, so
answer pairs added since the tuning (lab.guard.tuned_from_weights allows that) are learnt too. The manifest records the data files' sha256, the tuning report (learning-rate sweep, seeds,
leave-one-source-out folds) and every validation set's metrics at the thresholds, which tests/agents/safety
checks the shipped weights against.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from agents.safety.classifier import request_features, response_features
from agents.safety.encoder import EMBEDDING_DTYPE
from agents.safety.heads import HEADS_FILE, Head, StageHeads, save_heads
from agents.safety.verdict import HAZARD_CATEGORIES
from configs.errors import AppError
from configs.settings import EMBEDDED_EMBEDDER, PROJECT_ROOT
from lab.guard.cli import base_parser, run, settings_from
from lab.guard.metrics import binary_metrics, choose_threshold
from lab.guard.sources import MIX_FILE, TECHNICAL_QUESTIONS_FILE, Mix, extra_files, load_mix
from lab.guard.splits import (
    CALIBRATION_SUFFIX,
    calibration_sets,
    request_validation_sets,
    response_training_set,
    response_validation_sets,
)
from lab.guard.training_data import Example, SafetyData, SplitSizes
from lab.guard.tune_encoder import read_bundle
from lab.guard.tuning_bundle import DEFAULT_BUNDLE, WRITTEN_WEIGHT, build_bundle, loss_weight
from lab.hashing import file_sha256

logger = logging.getLogger(__name__)

# The calibration sets hold hard look-alikes (HateCheck non-hateful, CoCoNot contrast); 5% is issue 20's target.
DEFAULT_MAX_FPR = 0.05
ADAPTER_DIR = "encoder"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
# The answer heads' regularisation: picked for the hazard head by out-of-fold average precision over
# {0.25, 1, 4, 16} on frozen embeddings while developing; the unsafe head uses the same (not tuned apart).
LOGISTIC_C = 4.0


class TunedEncoderError(AppError, ValueError):
    """The tuned encoder folder is incomplete or was tuned on other data than this checkout builds."""


def fit_unsafe_head(examples: list[Example], features: np.ndarray, labels: np.ndarray, seed: int) -> Head:
    """Logistic regression of the unsafe label, each example weighted as in the encoder's tuning loss."""
    from sklearn.linear_model import LogisticRegression

    weights = np.array([loss_weight(e) for e in examples])
    model = LogisticRegression(C=LOGISTIC_C, max_iter=5000, random_state=seed).fit(features, labels,
                                                                                  sample_weight=weights)
    return Head(((model.coef_.astype(np.float32), model.intercept_.astype(np.float32)),))


def fit_category_head(examples: list[Example], features: np.ndarray, categories: list[str], seed: int) -> Head:
    """Softmax regression over the primary hazard code of the unsafe examples."""
    rows = [i for i, e in enumerate(examples) if e.unsafe and e.categories]  # unmapped hazards: no category
    primary = np.array([categories.index(examples[i].categories[0]) for i in rows])
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=LOGISTIC_C, max_iter=5000, random_state=seed).fit(features[rows], primary)
    # Categories without training rows keep a very negative bias, so they are never predicted.
    weight = np.zeros((len(categories), features.shape[1]), dtype=np.float32)
    bias = np.full(len(categories), -30.0, dtype=np.float32)
    weight[model.classes_] = model.coef_
    bias[model.classes_] = model.intercept_
    return Head(((weight, bias),))


def calibrate(scores: dict[str, np.ndarray], truth: dict[str, np.ndarray], calibration: list[str],
              max_fpr: float) -> tuple[float, dict[str, Any]]:
    """The threshold chosen on the calibration sets' scores, and every validation set's metrics at it."""
    pooled_truth = np.concatenate([truth[name] for name in calibration])
    pooled_scores = np.concatenate([scores[name] for name in calibration])
    threshold = choose_threshold(pooled_truth, pooled_scores, max_fpr)
    report = {name: binary_metrics(truth[name], scores[name] >= threshold) for name in scores}
    report["calibration_pool"] = binary_metrics(pooled_truth, pooled_scores >= threshold)
    return threshold, report


def threshold_spread(scores: dict[str, np.ndarray], truth: dict[str, np.ndarray], calibration: list[str],
                     max_fpr: float) -> dict[str, float]:
    """The threshold the same rule picks on the calibration halves, on the halves that chose nothing, and on both:
    how far the shipped threshold rests on which rows happened to calibrate."""
    other = [name.removesuffix(CALIBRATION_SUFFIX) for name in calibration]

    def pick(names: list[str]) -> float:
        return choose_threshold(np.concatenate([truth[n] for n in names]), np.concatenate([scores[n] for n in names]),
                                max_fpr)

    return {"calibration_halves": pick(calibration), "other_halves": pick(other), "both": pick(calibration + other)}


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
    import peft
    import sklearn
    import torch

    return {"numpy": np.__version__, "scikit-learn": sklearn.__version__, "torch": torch.__version__,
            "peft": peft.__version__}


def stack(vectors: dict[str, np.ndarray], texts: list[str]) -> np.ndarray:
    return np.stack([vectors[text] for text in texts])


def truth_of(sets: dict[str, list[Example]]) -> dict[str, np.ndarray]:
    return {name: np.array([e.unsafe for e in rows], dtype=bool) for name, rows in sets.items()}


def load_tuned(tuned: Path, bundle: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Head], dict[str, Any]]:
    """(embedding of every bundle text, the tuned request heads, the tuning report) from a tune_encoder folder."""
    from safetensors.numpy import load_file

    needed = [tuned / "report.json", tuned / HEADS_FILE, *(tuned / ADAPTER_DIR / name for name in ADAPTER_FILES)]
    missing = [str(path) for path in needed if not path.is_file()]
    if missing:
        raise TunedEncoderError(f"{tuned} is not a python -m lab.guard.tune_encoder output: missing {', '.join(missing)}")
    report = json.loads((tuned / "report.json").read_text(encoding="utf-8"))
    embeddings = np.concatenate([np.load(tuned / name) for name in report["embedding_files"]]).astype(np.float32)
    if len(embeddings) != len(bundle["texts"]):
        raise TunedEncoderError(f"{tuned} holds {len(embeddings)} embeddings for a bundle of {len(bundle['texts'])} texts")
    tensors = load_file(str(tuned / HEADS_FILE))
    # The tuned answer head is left: the answer heads are fitted here over every answer pair (response_stage).
    heads = {name: Head(((tensors[f"{name}.0.weight"], tensors[f"{name}.0.bias"]),)) for name in ("unsafe", "category")}
    return dict(zip(bundle["texts"], embeddings, strict=True)), heads, report


def copy_adapter(tuned: Path, output: Path) -> None:
    """The adapter files, with the base named as the service knows it (tuning ran on a local copy)."""
    target = output / ADAPTER_DIR
    target.mkdir(parents=True, exist_ok=True)
    for name in ADAPTER_FILES:
        shutil.copyfile(tuned / ADAPTER_DIR / name, target / name)
        (target / name).chmod(0o644)
    config = json.loads((target / "adapter_config.json").read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = EMBEDDED_EMBEDDER
    (target / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def response_stage(data: SafetyData, mix: Mix, vectors: dict[str, np.ndarray], tuned: dict[str, Head],
                   categories: list[str], max_fpr: float) -> tuple[StageHeads, dict[str, Any], dict[str, Any]]:
    """The answer heads fitted over the tuned encoder's features of every answer pair, and calibrated."""
    request_head = tuned["unsafe"]

    def features_of(rows: list[Example]) -> np.ndarray:
        asked, answers = stack(vectors, [e.request for e in rows]), stack(vectors, [e.answer or "" for e in rows])
        scores = [request_head.unsafe_probability(request_features(x)) for x in (asked, answers)]
        return response_features(asked, answers, *scores)

    examples = response_training_set(data, mix)
    features, labels = features_of(examples), np.array([e.unsafe for e in examples], dtype=np.int64)
    unsafe_head = fit_unsafe_head(examples, features, labels, data.seed)
    validation = response_validation_sets(data, mix)
    threshold, metrics = calibrate(
        {name: unsafe_head.unsafe_probability(features_of(rows)) for name, rows in validation.items()},
        truth_of(validation), calibration_sets(mix, "response"), max_fpr)
    by_category = Counter(e.primary_category for e in examples if e.unsafe)
    report = {
        "examples": len(examples),
        "unsafe": int(labels.sum()),
        "by_source": dict(sorted(Counter(f"{e.source}:{'unsafe' if e.unsafe else 'safe'}" for e in examples).items())),
        "unsafe_by_category": dict(sorted(by_category.items(), key=lambda item: (len(item[0]), item[0]))),
        "head": {"model": "logistic regression over the LoRA-tuned encoder's answer features", "C": LOGISTIC_C,
                 "written_weight": WRITTEN_WEIGHT, "category_head": {"model": "logistic", "C": LOGISTIC_C}},
    }
    heads = StageHeads(unsafe_head, fit_category_head(examples, features, categories, data.seed), threshold)
    return heads, report, metrics


def train(data: SafetyData, mix: Mix, output: Path, *, tuned: Path, bundle_path: Path, max_fpr: float,
          sizes: SplitSizes) -> dict[str, Any]:
    tuned_bundle = read_bundle(bundle_path)
    if build_bundle(data, mix, sizes) != tuned_bundle:
        raise TunedEncoderError(f"{bundle_path} is not what this checkout's data and mix give: rebuild it with "
                                "`python -m lab.guard.tuning_bundle` and tune again")
    vectors, tuned_heads, tuning = load_tuned(tuned, tuned_bundle)
    categories = list(HAZARD_CATEGORIES)
    request_val = request_validation_sets(data, mix, sizes)
    request_head = tuned_heads["unsafe"]
    request_scores = {name: request_head.unsafe_probability(request_features(stack(vectors, [e.request for e in rows])))
                      for name, rows in request_val.items()}
    request_threshold, request_validation = calibrate(request_scores, truth_of(request_val),
                                                      calibration_sets(mix, "request"), max_fpr)
    response_heads, response_report, response_validation = response_stage(
        data, mix, vectors, tuned_heads, categories, max_fpr)
    heads = {"request": StageHeads(tuned_heads["unsafe"], tuned_heads["category"], request_threshold),
             "response": response_heads}
    training_rows = tuned_bundle["sets"]["train"]
    manifest = {
        "format": 3,
        "embedder": EMBEDDED_EMBEDDER,
        "encoder_adapter": ADAPTER_DIR,
        "embedding_dim": int(next(iter(vectors.values())).shape[0]),
        "embedding_dtype": EMBEDDING_DTYPE,
        "features": {"request": "embedding(latest user turn) from the tuned encoder",
                     "response": "[e(request), e(answer), e(request) * e(answer), score(request), score(answer)], "
                                 "score = 0.25 * clipped logit of the request head"},
        "categories": categories,
        "thresholds": {"request": request_threshold, "response": response_heads.threshold},
        "threshold_rule": f"highest F1 with FPR <= {max_fpr} on the calibration validation sets "
                          "(lab.guard.splits.calibration_sets), never on training data",
        "calibration_sets": {stage: calibration_sets(mix, stage) for stage in ("request", "response")},
        "request_threshold_spread": threshold_spread(request_scores, truth_of(request_val),
                                                     calibration_sets(mix, "request"), max_fpr),
        "seed": data.seed,
        "mix": {"file": str(MIX_FILE.relative_to(PROJECT_ROOT)), "files": mix.files, "seed": mix.seed},
        "sizes": {"harmless_train": sizes.harmless_train, "harmless_test": sizes.harmless_test,
                  "answers_per_benign_set": sizes.answers_per_benign_set},
        "training": {
            "request": {"examples": len(training_rows["text"]), "unsafe": int(sum(training_rows["unsafe"])),
                        "head": {"model": "linear over the LoRA-tuned encoder", "recipe": tuning["kept"]["recipe"]}},
            "response": response_report,
        },
        # Every validation set's metrics at the shipped thresholds, from the fp16-stored embeddings of the tuning
        # run, or of lab.guard.tuned_from_weights where encoder_tuning.embeddings says so.
        "validation": {"request": request_validation, "response": response_validation},
        "encoder_tuning": {key: tuning[key] for key in ("command", "device", "versions", "max_fpr", "kept", "sweep",
                                                        "seeds", "leave_one_out", "seconds")}
                          | {key: tuning[key] for key in ("fold_runs", "embeddings") if key in tuning},
        "bundle_sha256": file_sha256(bundle_path),
        "data_files": data_file_records(data, mix),
        "library_versions": library_versions(),
        "command": "python -m lab.guard.train --tuned DIR",
    }
    save_heads(output, heads, manifest)
    copy_adapter(tuned, output)
    return manifest


def main(args: argparse.Namespace) -> int:
    settings = settings_from(args, {"safety.seed": args.seed})
    data = SafetyData(settings.data_dir, settings.safety.seed)
    output = args.output or settings.safety.classifier_path
    manifest = train(data, load_mix(args.mix), output, tuned=args.tuned, bundle_path=args.bundle,
                     max_fpr=args.max_fpr, sizes=SplitSizes())
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
    parser.add_argument("--tuned", type=Path, required=True, help="the output folder of python -m lab.guard.tune_encoder")
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE, help="the bundle that was tuned on")
    parser.add_argument("--output", type=Path, help="weights folder (default: safety.classifier_path)")
    parser.add_argument("--seed", type=int, help="default: safety.seed")
    parser.add_argument("--max-fpr", type=float, default=DEFAULT_MAX_FPR,
                        help="largest false-positive rate on the calibration sets a threshold may have")
    parser.add_argument("--mix", type=Path, default=MIX_FILE, help="which sources train and which validate")
    return parser


if __name__ == "__main__":
    sys.exit(run(main, build_parser(), None))
