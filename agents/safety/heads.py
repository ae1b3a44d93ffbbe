"""The embedded classifier's trained parts: linear heads over sentence embeddings, and their files.

`weights/heads.safetensors` holds the tensors; `weights/manifest.json` holds everything needed to use and
to reproduce them (embedder, category order, thresholds, seed, data hashes, metrics). Inference needs
only numpy: no scikit-learn, no torch beyond the embedder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HEADS_FILE = "heads.safetensors"
MANIFEST_FILE = "manifest.json"
STAGES = ("request", "response")


class ClassifierFilesError(RuntimeError):
    """The trained classifier files are missing or inconsistent; the message says how to rebuild them."""


@dataclass(frozen=True)
class LinearHead:
    """A logistic (one output) or softmax (several outputs) layer: `weight` is (outputs, features)."""

    weight: np.ndarray
    bias: np.ndarray

    def logits(self, features: np.ndarray) -> np.ndarray:
        return features @ self.weight.T + self.bias

    def unsafe_probability(self, features: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logits(features)[:, 0]))

    def class_probabilities(self, features: np.ndarray) -> np.ndarray:
        logits = self.logits(features)
        logits = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class StageHeads:
    """One stage (request or response): is it unsafe, and if so which hazard."""

    unsafe: LinearHead
    category: LinearHead
    threshold: float


@dataclass(frozen=True)
class GuardHeads:
    request: StageHeads
    response: StageHeads
    categories: list[str]  # the category heads' output order
    manifest: dict[str, Any]

    @property
    def embedder(self) -> str:
        return self.manifest["embedder"]


def head_tensors(heads: dict[str, StageHeads]) -> dict[str, np.ndarray]:
    tensors: dict[str, np.ndarray] = {}
    for stage, stage_heads in heads.items():
        for kind in ("unsafe", "category"):
            head: LinearHead = getattr(stage_heads, kind)
            tensors[f"{stage}.{kind}.weight"] = np.ascontiguousarray(head.weight, dtype=np.float32)
            tensors[f"{stage}.{kind}.bias"] = np.ascontiguousarray(head.bias, dtype=np.float32)
    return tensors


def save_heads(directory: Path, heads: dict[str, StageHeads], manifest: dict[str, Any]) -> None:
    from safetensors.numpy import save_file

    directory.mkdir(parents=True, exist_ok=True)
    save_file(head_tensors(heads), str(directory / HEADS_FILE), metadata={"format": "aligned-rag-safety-heads/1"})
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def load_heads(directory: Path) -> GuardHeads:
    from safetensors.numpy import load_file

    directory = Path(directory)
    heads_path, manifest_path = directory / HEADS_FILE, directory / MANIFEST_FILE
    if not heads_path.is_file() or not manifest_path.is_file():
        raise ClassifierFilesError(
            f"no trained safety classifier in {directory} (need {HEADS_FILE} and {MANIFEST_FILE}); "
            "train it with `python -m agents.safety.train` or set safety.classifier_path"
        )
    tensors = load_file(str(heads_path))
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    try:
        stages = {
            stage: StageHeads(
                unsafe=LinearHead(tensors[f"{stage}.unsafe.weight"], tensors[f"{stage}.unsafe.bias"]),
                category=LinearHead(tensors[f"{stage}.category.weight"], tensors[f"{stage}.category.bias"]),
                threshold=float(manifest["thresholds"][stage]),
            )
            for stage in STAGES
        }
        categories = list(manifest["categories"])
    except KeyError as exc:
        raise ClassifierFilesError(f"{directory} is incomplete ({exc} missing); retrain with `python -m agents.safety.train`") from exc
    if stages["request"].category.weight.shape[0] != len(categories):
        raise ClassifierFilesError(f"{directory}: category head and manifest disagree; retrain the classifier")
    return GuardHeads(stages["request"], stages["response"], categories, manifest)
