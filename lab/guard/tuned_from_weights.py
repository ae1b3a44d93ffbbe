"""The shipped guard's tuning folder rebuilt on the CPU, so its thresholds can be calibrated again without a GPU.

    python -m lab.guard.tuned_from_weights --weights-bundle BUNDLE --output DIR
        [--bundle var/guard/tuning_bundle.json.xz] [--weights agents/safety/weights]

`python -m lab.guard.train --tuned DIR` calibrates from a `lab.guard.tune_encoder` folder: the adapter, the
heads, the embeddings of every bundle text and the tuning report. When only the calibration changes (the
threshold rule, or which validation rows calibrate in mix.yaml) and the training rows do not, the encoder
need not be tuned again: this writes that folder from the shipped weights (adapter and heads as shipped, the
tuning report from the manifest) with the embeddings of every text of --bundle computed by the service's own
encoder (float32 with the adapter merged, stored in float16 like the GPU run's). --weights-bundle is the bundle
the shipped weights were built from (its sha256 is the manifest's bundle_sha256; lab/guard/README.md says how to
rebuild it); the command refuses when --bundle's training requests are not exactly its, or when it drops one of
its answer pairs, since a validation row could then have been trained on. Answer pairs may be added: the answer
heads are fitted by lab.guard.train, on the CPU, over every pair.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from agents.safety.encoder import SentenceEncoder
from agents.safety.heads import HEADS_FILE, load_heads
from configs.errors import AppError
from configs.settings import PROJECT_ROOT
from lab.guard.cli import base_parser, run, settings_from
from lab.guard.tune_encoder import read_bundle, save_embeddings
from lab.guard.tuning_bundle import DEFAULT_BUNDLE
from lab.hashing import file_sha256

TRAINING_SETS = ("train", "responses")
BATCH_SIZE = 64


class RebuildError(AppError, ValueError):
    """The weights and bundles do not fit together; the message says which check failed."""


def training_rows(bundle: dict[str, Any]) -> dict[str, dict[str, list]]:
    """The bundle's training sets with text ids resolved to texts (ids depend on the order of all texts)."""
    texts = bundle["texts"]
    return {name: {field: [texts[i] for i in values] if field in ("text", "answer") else values
                   for field, values in bundle["sets"][name].items()} for name in TRAINING_SETS}


def check_bundles(manifest: dict[str, Any], weights_bundle: Path, bundle: Path) -> None:
    if file_sha256(weights_bundle) != manifest["bundle_sha256"]:
        raise RebuildError(f"{weights_bundle} is not the bundle the shipped weights were built from "
                           f"(sha256 {manifest['bundle_sha256']})")
    shipped, new = training_rows(read_bundle(weights_bundle)), training_rows(read_bundle(bundle))
    if shipped["train"] != new["train"] or not answer_pairs(shipped) <= answer_pairs(new):
        raise RebuildError(f"{bundle} trains on other requests or fewer answer pairs than {weights_bundle}: "
                           "tune the encoder again (python -m lab.guard.tune_encoder)")


def answer_pairs(rows: dict[str, dict[str, list]]) -> set[tuple]:
    responses = rows["responses"]
    return set(zip(responses["text"], responses["answer"], responses["unsafe"], responses["weight"], strict=True))


def embed_all(encoder: SentenceEncoder, texts: list[str]) -> np.ndarray:
    """Every text's embedding, in batches of similar length (little padding), in the texts' order."""
    order = np.argsort([len(text) for text in texts], kind="stable")
    out = np.zeros((len(texts), 0), dtype=np.float32)
    for start in tqdm(range(0, len(order), BATCH_SIZE), desc="embedding", unit="batch"):
        chosen = order[start : start + BATCH_SIZE]
        vectors = encoder.forward([texts[i] for i in chosen])
        if out.shape[1] == 0:
            out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
        out[chosen] = vectors
    return out


def write_heads(weights: Path, output: Path) -> None:
    """The tuned request heads (unsafe and category) under tune_encoder's names; lab.guard.train fits the answer
    heads itself."""
    from safetensors.numpy import load_file, save_file

    shipped = load_file(str(weights / HEADS_FILE))
    names = {"unsafe": "request.unsafe", "category": "request.category"}
    save_file({f"{tuned}.0.{part}": shipped[f"{ours}.0.{part}"] for tuned, ours in names.items()
               for part in ("weight", "bias")}, str(output / HEADS_FILE))


def rebuild(weights: Path, weights_bundle: Path, bundle: Path, output: Path) -> dict[str, Any]:
    heads = load_heads(weights)
    manifest = heads.manifest
    check_bundles(manifest, weights_bundle, bundle)
    if heads.encoder_adapter is None:
        raise RebuildError(f"{weights} holds heads over a frozen encoder: nothing tuned to rebuild")
    output.mkdir(parents=True, exist_ok=True)
    shutil.copytree(heads.encoder_adapter, output / "encoder", dirs_exist_ok=True)
    write_heads(weights, output)
    encoder = SentenceEncoder.load(heads.embedder, adapter=heads.encoder_adapter, cache_size=0)
    texts = read_bundle(bundle)["texts"]
    report = {
        **manifest["encoder_tuning"],
        "bundle_sha256": file_sha256(bundle),
        "embedding_files": save_embeddings(embed_all(encoder, texts), output),
        "text_count": len(texts),
        "embeddings": {"command": "python -m lab.guard.tuned_from_weights " + " ".join(sys.argv[1:]),
                       "device": "cpu", "computed_in": "float32, adapter merged (the service's encoder)",
                       "weights_bundle_sha256": manifest["bundle_sha256"]},
    }
    (output / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def main(args: argparse.Namespace) -> int:
    weights = args.weights or settings_from(args).safety.classifier_path
    report = rebuild(weights, args.weights_bundle, args.bundle, args.output)
    print(f"{report['text_count']} texts embedded; wrote {args.output} "
          f"(calibrate with: python -m lab.guard.train --tuned {args.output})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = base_parser("python -m lab.guard.tuned_from_weights", __doc__.splitlines()[0])
    parser.add_argument("--weights-bundle", type=Path, required=True,
                        help="the bundle the shipped weights were built from (the manifest's bundle_sha256)")
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE, help="the bundle to embed (this checkout's)")
    parser.add_argument("--weights", type=Path, help="the guard's weights folder (default: safety.classifier_path)")
    parser.add_argument("--output", type=Path, default=PROJECT_ROOT / "var" / "guard" / "tuned-cpu")
    return parser


if __name__ == "__main__":
    sys.exit(run(main, build_parser(), None))
