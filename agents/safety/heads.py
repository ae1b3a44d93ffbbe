"""The embedded classifier's trained parts: small dense heads over sentence embeddings, and their files.

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

from configs.errors import AppError

HEADS_FILE = "heads.safetensors"
MANIFEST_FILE = "manifest.json"
STAGES = ("request", "response")


class ClassifierFilesError(AppError, RuntimeError):
    """The trained classifier files are missing or inconsistent; the message says how to rebuild them."""


@dataclass(frozen=True)
class Head:
    """Dense layers with ReLU between them; `layers[i]` is (weight (outputs, inputs), bias (outputs,)).

    One layer is a logistic/softmax regression, two layers a small MLP; the last layer gives one logit
    (is it unsafe) or one logit per hazard category.
    """

    layers: tuple[tuple[np.ndarray, np.ndarray], ...]

    def logits(self, features: np.ndarray) -> np.ndarray:
        hidden = features
        for index, (weight, bias) in enumerate(self.layers):
            hidden = hidden @ weight.T + bias
            if index < len(self.layers) - 1:
                hidden = np.maximum(hidden, 0.0)
        return hidden

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

    unsafe: Head
    category: Head
    threshold: float


@dataclass(frozen=True)
class GuardHeads:
    request: StageHeads
    response: StageHeads
    categories: list[str]  # the category heads' output order
    manifest: dict[str, Any]

    directory: Path

    @property
    def embedder(self) -> str:
        return self.manifest["embedder"]

    @property
    def encoder_adapter(self) -> Path | None:
        """The fine-tuned encoder's LoRA adapter folder (lab.guard.tune_encoder), if the heads read its embeddings."""
        name = self.manifest.get("encoder_adapter")
        return self.directory / name if name else None


def head_tensors(heads: dict[str, StageHeads]) -> dict[str, np.ndarray]:
    tensors: dict[str, np.ndarray] = {}
    for stage, stage_heads in heads.items():
        for kind in ("unsafe", "category"):
            head: Head = getattr(stage_heads, kind)
            for index, (weight, bias) in enumerate(head.layers):
                tensors[f"{stage}.{kind}.{index}.weight"] = np.ascontiguousarray(weight, dtype=np.float32)
                tensors[f"{stage}.{kind}.{index}.bias"] = np.ascontiguousarray(bias, dtype=np.float32)
    return tensors


def _head(tensors: dict[str, np.ndarray], prefix: str) -> Head:
    layers = []
    while f"{prefix}.{len(layers)}.weight" in tensors:
        index = len(layers)
        layers.append((tensors[f"{prefix}.{index}.weight"], tensors[f"{prefix}.{index}.bias"]))
    if not layers:
        raise KeyError(f"{prefix}.0.weight")
    return Head(tuple(layers))


def save_heads(directory: Path, heads: dict[str, StageHeads], manifest: dict[str, Any]) -> None:
    from safetensors.numpy import save_file

    directory.mkdir(parents=True, exist_ok=True)
    save_file(head_tensors(heads), str(directory / HEADS_FILE), metadata={"format": "aligned-rag-safety-heads/1"})
    (directory / HEADS_FILE).chmod(0o644)  # safetensors writes 0600; the file ships in the repository
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def load_heads(directory: Path) -> GuardHeads:
    from safetensors.numpy import load_file

    directory = Path(directory)
    heads_path, manifest_path = directory / HEADS_FILE, directory / MANIFEST_FILE
    if not heads_path.is_file() or not manifest_path.is_file():
        raise ClassifierFilesError(
            f"no trained safety classifier in {directory} (need {HEADS_FILE} and {MANIFEST_FILE}); "
            "train it with `python -m lab.guard.train` or set safety.classifier_path"
        )
    tensors = load_file(str(heads_path))
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    try:
        stages = {
            stage: StageHeads(
                unsafe=_head(tensors, f"{stage}.unsafe"),
                category=_head(tensors, f"{stage}.category"),
                threshold=float(manifest["thresholds"][stage]),
            )
            for stage in STAGES
        }
        categories = list(manifest["categories"])
    except KeyError as exc:
        raise ClassifierFilesError(f"{directory} is incomplete ({exc} missing); retrain with `python -m lab.guard.train`") from exc
    if any(stages[stage].category.layers[-1][0].shape[0] != len(categories) for stage in STAGES):
        raise ClassifierFilesError(f"{directory}: category head and manifest disagree; retrain the classifier")
    heads = GuardHeads(stages["request"], stages["response"], categories, manifest, directory)
    adapter = heads.encoder_adapter
    if adapter is not None and not (adapter / "adapter_config.json").is_file():
        raise ClassifierFilesError(f"{directory}: the encoder adapter {adapter.name}/ is missing; retrain the classifier")
    return heads
