"""Fine-tune the guard's sentence encoder end to end (LoRA on MiniLM) with its request heads; meant for a GPU.

    python -m lab.guard.tune_encoder --bundle var/guard/tuning_bundle.json.xz --base MINILM_DIR --output DIR
        [--learning-rates 2e-4 5e-4 1e-3] [--epochs 3] [--length-window 32] [--seeds 1 2]
        [--leave-one-out [SOURCE ...]] [--folds-only]

Frozen MiniLM embeddings separate the sources of the training mix better than its hazards (issue 20: heads on
them reached leave-one-source-out F1 0.63), so the encoder itself learns the boundary here: LoRA adapters on
every linear layer of MiniLM, a linear "unsafe" head and a linear hazard-category head over the normalised
mean-pooled embedding the service computes, trained together (weighted binary cross-entropy, plus
cross-entropy on the hazard of unsafe rows). The cost per verdict stays that of MiniLM: the service merges the
adapter into the encoder when it loads it.

The answer stage trains in the same loop: a linear head over the service's response features (both
embeddings, their product and the request head's scores of both: agents.safety.classifier.response_features)
learns from (request, answer) pairs, a batch of them after each batch of requests, so answers are embedded by
an encoder that has seen answers too. The answer heads the service ships are fitted afterwards by
`python -m lab.guard.train` over this encoder's features of every answer pair; this head shapes the encoder.

The bundle (lab.guard.tuning_bundle) carries the splits, so this needs only torch, transformers, peft and
numpy. Steps, all seeded: one model per learning rate, the one with the best calibration-pool F1 (at the
highest threshold whose false-positive rate there is <= --max-fpr; calibration sets are validation rows of
trained-on sources, never training rows) is kept and written; the kept recipe is re-trained with --seeds for
its spread; with --leave-one-out, once per held-out source (every fold of the bundle, or the ones named) without
that source's rows, then tested on all of them at a threshold calibrated without them. --folds-only trains the
folds alone, with the one recipe the flags give (the shipped one: see the manifest), so folds can run in separate
processes side by side; `python -m lab.guard.add_folds` adds them to the shipped manifest. Output: `encoder/`
(the PEFT adapter), `heads.safetensors` (request unsafe and category, response unsafe), the fp16 embeddings of
every bundle text from the kept model (`embeddings-N.npy`, split to stay under transfer limits) and
`report.json`; with --folds-only, `report.json` alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import lzma
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from configs.cli import add_common_arguments, configure_logging, run_cli
from configs.errors import AppError
from lab.guard.metrics import binary_metrics, choose_threshold
from lab.hashing import file_sha256

logger = logging.getLogger(__name__)

MAX_TOKENS = 256  # what the service's encoder truncates at (agents.safety.encoder.MAX_TOKENS)
# Heads read the unit-length embedding times this, so their weights start in a useful range; the exported
# heads have it folded into their weights and read the service's embedding as it is.
FEATURE_SCALE = 16.0
CATEGORY_LOSS_WEIGHT = 0.5
EMBEDDING_PARTS = 3


class TuningError(AppError, ValueError):
    """Flags that ask for something the bundle or the script cannot do; the message says what."""


@dataclass(frozen=True)
class Recipe:
    learning_rate: float
    epochs: int
    seed: int
    batch_size: int = 64
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    head_learning_rate: float = 2e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.06
    # Batches drawn from windows of this many batches sorted by length (transformers' group_by_length): the
    # texts run from 5 to 256 tokens, so shuffled batches are mostly padding (on the bundle, window 32 pads a
    # fifth as many tokens). 1, plain shuffled batches, is what the shipped encoder was tuned with.
    length_window: int = 1


class Tokenized:
    """Every bundle text tokenized once (truncated, unpadded); batches pad to their longest row."""

    def __init__(self, tokenizer, texts: list[str]) -> None:
        self.ids = tokenizer(texts, truncation=True, max_length=MAX_TOKENS)["input_ids"]
        self.lengths = np.array([len(ids) for ids in self.ids])
        self.pad_id = tokenizer.pad_token_id

    def batch(self, rows: np.ndarray, device):
        import torch

        longest = max(len(self.ids[i]) for i in rows)
        ids = np.full((len(rows), longest), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), longest), dtype=np.int64)
        for j, i in enumerate(rows):
            ids[j, : len(self.ids[i])] = self.ids[i]
            mask[j, : len(self.ids[i])] = 1
        return torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)


def fold_sources(bundle: dict[str, Any], requested: list[str] | None) -> list[str]:
    """The leave-one-out folds to run: none without --leave-one-out, all of the bundle's for the bare flag,
    else the ones named (each must be a fold of the bundle)."""
    if requested is None:
        return []
    unknown = sorted(set(requested) - set(bundle["leave_one_out"]))
    if unknown:
        raise TuningError(f"no leave-one-out fold for {', '.join(unknown)}; the bundle's folds are "
                          f"{', '.join(bundle['leave_one_out'])}")
    return requested or list(bundle["leave_one_out"])


def read_bundle(path: Path) -> dict[str, Any]:
    """A bundle written by lab.guard.tuning_bundle (read here without its settings and data imports)."""
    with lzma.open(path, "rt", encoding="utf-8") as handle:
        return json.load(handle)


def build_model(base: Path, recipe: Recipe, categories: int):
    import torch
    from peft import LoraConfig, get_peft_model
    from torch import nn
    from transformers import AutoModel

    torch.manual_seed(recipe.seed)
    encoder = AutoModel.from_pretrained(base, torch_dtype=torch.float32)
    config = LoraConfig(r=recipe.lora_rank, lora_alpha=recipe.lora_alpha, lora_dropout=recipe.lora_dropout,
                        target_modules=["query", "key", "value", "dense"], bias="none")
    encoder = get_peft_model(encoder, config)
    width = encoder.config.hidden_size
    return nn.ModuleDict({"encoder": encoder, "unsafe": nn.Linear(width, 1), "category": nn.Linear(width, categories),
                          "response": nn.Linear(3 * width + 2, 1)})


def embed(model, ids, mask):
    """The service's embedding: mean over real tokens, then unit length (agents.safety.encoder)."""
    import torch

    hidden = model["encoder"](input_ids=ids, attention_mask=mask).last_hidden_state.float()
    weights = mask.unsqueeze(-1).float()
    pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=1)


# agents.safety.classifier.score_feature: 0.25 * the request head's logit, clipped at probabilities 1e-4 / 1 - 1e-4.
# Restated here because that module needs the settings stack the GPU image lacks; tests/lab/guard checks they agree.
SCORE_SCALE, SCORE_CLIP = 0.25, math.log((1 - 1e-4) / 1e-4)


def response_logit(model, asked, answer):
    """The response head over the service's response features of unit-length embeddings `asked` and `answer`."""
    import torch

    scores = [SCORE_SCALE * model["unsafe"](FEATURE_SCALE * e).clamp(-SCORE_CLIP, SCORE_CLIP) for e in (asked, answer)]
    return model["response"](torch.cat([asked, answer, asked * answer, *scores], dim=1)).squeeze(1)


def train_model(base: Path, recipe: Recipe, data: Tokenized, rows: dict[str, np.ndarray], categories: int, device,
                responses: dict[str, np.ndarray] | None = None):
    """One model trained on request `rows` (text ids, labels, categories, weights) and, when given, answer
    `responses` (request and answer text ids, labels, weights); returns it and its loss curve."""
    import torch
    from torch import nn
    from tqdm import tqdm

    model = build_model(base, recipe, categories).to(device)
    lora = [p for p in model["encoder"].parameters() if p.requires_grad]
    heads = [*model["unsafe"].parameters(), *model["category"].parameters(), *model["response"].parameters()]
    optimizer = torch.optim.AdamW([{"params": lora, "lr": recipe.learning_rate},
                                   {"params": heads, "lr": recipe.head_learning_rate}],
                                  weight_decay=recipe.weight_decay)
    steps_per_epoch = math.ceil(len(rows["text"]) / recipe.batch_size)
    total = steps_per_epoch * recipe.epochs
    warmup = max(1, int(recipe.warmup_fraction * total))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total - step) / max(1, total - warmup))))
    order = np.random.default_rng(recipe.seed)
    unsafe = torch.tensor(rows["unsafe"], dtype=torch.float32, device=device)
    category = torch.tensor(rows["category"], dtype=torch.long, device=device)
    weight = torch.tensor(rows["weight"], dtype=torch.float32, device=device)
    binary = nn.BCEWithLogitsLoss(reduction="none")
    hazard = nn.CrossEntropyLoss(reduction="none", ignore_index=-1)
    autocast = device.type == "cuda"
    answer_batches = None
    if responses is not None:  # a pair pads to its longer text
        pair_lengths = np.maximum(data.lengths[responses["text"]], data.lengths[responses["answer"]])
        answer_batches = endless_batches(pair_lengths, recipe.batch_size // 2, recipe.length_window, order)
    curve = []
    progress = tqdm(total=total, desc=f"tuning lr {recipe.learning_rate:g} seed {recipe.seed}", unit="step")
    model.train()
    for _ in range(recipe.epochs):
        for batch in length_grouped_batches(data.lengths[rows["text"]], recipe.batch_size, recipe.length_window, order):
            ids, mask = data.batch(rows["text"][batch], device)
            index = torch.as_tensor(batch, device=device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                features = FEATURE_SCALE * embed(model, ids, mask)
            unsafe_logit = model["unsafe"](features).squeeze(1)
            loss = (binary(unsafe_logit, unsafe[index]) * weight[index]).mean()
            labelled = category[index] >= 0
            if labelled.any():
                loss = loss + CATEGORY_LOSS_WEIGHT * hazard(model["category"](features), category[index])[labelled].mean()
            if answer_batches is not None:
                chosen = next(answer_batches)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                    asked, answer = (embed(model, *data.batch(responses[key][chosen], device)) for key in ("text", "answer"))
                label = torch.as_tensor(responses["unsafe"][chosen], device=device)
                loss = loss + (binary(response_logit(model, asked, answer), label)
                               * torch.as_tensor(responses["weight"][chosen], device=device)).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([*lora, *heads], 1.0)
            optimizer.step()
            schedule.step()
            curve.append(float(loss.detach()))
            progress.update()
    progress.close()
    model.eval()
    return model, curve


def length_grouped_batches(lengths: np.ndarray, size: int, window: int, order: np.random.Generator) -> list[np.ndarray]:
    """One epoch of batches of row indices: shuffled, each window of `window` batches sorted by length and cut
    into batches of similar lengths, and the batches shuffled again so lengths do not drift over the epoch.
    Window 1 is the plain shuffle, drawn exactly as the shipped encoder's tuning drew it."""
    permutation = order.permutation(len(lengths))
    if window == 1:
        return [permutation[start : start + size] for start in range(0, len(permutation), size)]
    span = size * window
    batches = []
    for start in range(0, len(permutation), span):
        chunk = permutation[start : start + span]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + size] for i in range(0, len(chunk), size))
    return [batches[i] for i in order.permutation(len(batches))]


def endless_batches(lengths: np.ndarray, size: int, window: int, order: np.random.Generator):
    """Length-grouped batches of answer rows without end (fewer than requests: they cycle over several epochs);
    a short last batch is dropped."""
    if len(lengths) < size:
        raise TuningError(f"{len(lengths)} answer pairs cannot fill one batch of {size}")
    while True:
        yield from (batch for batch in length_grouped_batches(lengths, size, window, order) if len(batch) == size)


def embeddings_of(model, data: Tokenized, text_ids: np.ndarray, device, batch_size: int = 256) -> np.ndarray:
    """float32 embeddings (no autocast: what the service's float32 encoder computes)."""
    import torch

    out = np.zeros((len(text_ids), model["encoder"].config.hidden_size), dtype=np.float32)
    by_length = np.argsort([len(data.ids[i]) for i in text_ids], kind="stable")
    with torch.inference_mode():
        for start in range(0, len(by_length), batch_size):
            chosen = by_length[start : start + batch_size]
            ids, mask = data.batch(text_ids[chosen], device)
            out[chosen] = embed(model, ids, mask).cpu().numpy()
    return out


def unsafe_scores(model, embeddings: np.ndarray) -> np.ndarray:
    weight, bias = exported_head(model["unsafe"])
    return 1.0 / (1.0 + np.exp(-(embeddings @ weight.T + bias)[:, 0]))


def exported_head(layer) -> tuple[np.ndarray, np.ndarray]:
    """A head as it reads the service's unit-length embedding (FEATURE_SCALE folded into the weights)."""
    return (FEATURE_SCALE * layer.weight.detach().float().cpu().numpy(), layer.bias.detach().float().cpu().numpy())


def as_arrays(rows: dict[str, list]) -> dict[str, np.ndarray]:
    arrays = {"text": np.asarray(rows["text"], dtype=np.int64), "unsafe": np.asarray(rows["unsafe"], dtype=np.float32),
              "category": np.asarray(rows["category"], dtype=np.int64), "weight": np.asarray(rows["weight"], dtype=np.float32)}
    if "answer" in rows:
        arrays["answer"] = np.asarray(rows["answer"], dtype=np.int64)
    return arrays


def without_source(rows: dict[str, list], source: str) -> dict[str, np.ndarray]:
    keep = [i for i, s in enumerate(rows["source"]) if s != source]
    return {name: values[keep] for name, values in as_arrays(rows).items()}


def calibration_pool(model, data: Tokenized, sets: dict[str, dict[str, list]], names: list[str], max_fpr: float,
              device) -> tuple[float, dict[str, Any]]:
    """The threshold chosen on the pooled calibration sets `names` (FPR <= max_fpr), and the pool's metrics there."""
    truth = np.concatenate([np.asarray(sets[name]["unsafe"], dtype=bool) for name in names])
    scores = np.concatenate([unsafe_scores(model, embeddings_of(model, data, np.asarray(sets[name]["text"]), device))
                             for name in names])
    threshold = choose_threshold(truth, scores, max_fpr)
    return threshold, binary_metrics(truth, scores >= threshold)


def save_model(model, output: Path) -> None:
    from safetensors.numpy import save_file

    model["encoder"].save_pretrained(output / "encoder")
    tensors = {}
    for name in ("unsafe", "category"):
        weight, bias = exported_head(model[name])
        tensors[f"{name}.0.weight"], tensors[f"{name}.0.bias"] = np.ascontiguousarray(weight), np.ascontiguousarray(bias)
    response = model["response"]  # reads the service's features as they are: nothing folded in
    tensors["response.0.weight"] = response.weight.detach().float().cpu().numpy()
    tensors["response.0.bias"] = response.bias.detach().float().cpu().numpy()
    save_file(tensors, str(output / "heads.safetensors"))


def save_embeddings(embeddings: np.ndarray, output: Path) -> list[str]:
    names = []
    for part, chunk in enumerate(np.array_split(embeddings.astype(np.float16), EMBEDDING_PARTS)):
        names.append(f"embeddings-{part}.npy")
        np.save(output / names[-1], chunk)
    return names


def tune_kept_model(args: argparse.Namespace, bundle: dict[str, Any], data: Tokenized, run_recipe, device):
    """One model per learning rate; the best by calibration F1 is written to --output with the fp16 embeddings
    of every bundle text. Returns (its recipe, its result, the sweep's results, the embedding files)."""
    training, calibration = as_arrays(bundle["sets"]["train"]), bundle["calibration"]
    sweep, best = [], None
    for rate in args.learning_rates:
        model, result = run_recipe(Recipe(rate, args.epochs, bundle["seed"], length_window=args.length_window),
                                   training, calibration)
        sweep.append(result)
        if best is None or result["calibration_pool"]["f1"] > best[1]["calibration_pool"]["f1"]:
            best = (model, result)
        else:
            del model
    kept, kept_result = best
    args.output.mkdir(parents=True, exist_ok=True)
    save_model(kept, args.output)
    every_text = np.arange(len(bundle["texts"]))
    embedding_files = save_embeddings(embeddings_of(kept, data, every_text, device), args.output)
    chosen = Recipe(**kept_result["recipe"])
    return chosen, kept_result, sweep, embedding_files


def tune(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from transformers import AutoTokenizer

    started = time.perf_counter()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    bundle = read_bundle(args.bundle)
    sets, categories = bundle["sets"], len(bundle["categories"])
    data = Tokenized(AutoTokenizer.from_pretrained(args.base), bundle["texts"])
    training, responses = as_arrays(sets["train"]), as_arrays(sets["responses"])
    calibration = bundle["calibration"]

    def run_recipe(recipe: Recipe, rows: dict[str, np.ndarray], names: list[str]):
        began = time.perf_counter()
        model, curve = train_model(args.base, recipe, data, rows, categories, device, responses)
        threshold, pool = calibration_pool(model, data, sets, names, args.max_fpr, device)
        logger.info("%s: calibration F1 %.4f at %.3f (%.0f s)", recipe, pool["f1"], threshold, time.perf_counter() - began)
        return model, {"recipe": asdict(recipe), "threshold": threshold, "calibration_pool": pool,
                       "first_loss": round(float(np.mean(curve[:20])), 4), "last_loss": round(float(np.mean(curve[-20:])), 4),
                       "seconds": round(time.perf_counter() - began, 1)}

    folds = fold_sources(bundle, args.leave_one_out)
    if args.folds_only:
        if not folds or len(args.learning_rates) != 1 or args.seeds:
            raise TuningError("--folds-only trains the --leave-one-out folds with one recipe: give --leave-one-out, "
                              "one --learning-rates and no --seeds")
        chosen = Recipe(args.learning_rates[0], args.epochs, bundle["seed"], length_window=args.length_window)
        kept_result, sweep, embedding_files = None, [], []
        args.output.mkdir(parents=True, exist_ok=True)
    else:
        chosen, kept_result, sweep, embedding_files = tune_kept_model(args, bundle, data, run_recipe, device)

    import peft
    import transformers

    report: dict[str, Any] = {
        "command": "python -m lab.guard.tune_encoder " + " ".join(sys.argv[1:]),
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
        "max_fpr": args.max_fpr,
        "feature_scale": FEATURE_SCALE,
        "bundle_sha256": file_sha256(args.bundle),
        "recipe": asdict(chosen),
        "kept": kept_result,
        "sweep": sweep,
        "seeds": [],
        "leave_one_out": {},
        "embedding_files": embedding_files,
        "text_count": len(bundle["texts"]),
    }

    def write_report() -> None:  # after every phase, so a run cut short still says what it measured
        report["seconds"] = round(time.perf_counter() - started, 1)
        (args.output / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    write_report()
    for seed in args.seeds:
        report["seeds"].append(run_recipe(replace(chosen, seed=seed), training, calibration)[1])
        write_report()
    for source in folds:
        names = [name for name in calibration if name.split("/")[1] != source]
        model, result = run_recipe(chosen, without_source(sets["train"], source), names)
        test = sets[f"loo/{source}"]
        scores = unsafe_scores(model, embeddings_of(model, data, np.asarray(test["text"]), device))
        truth = np.asarray(test["unsafe"], dtype=bool)
        report["leave_one_out"][source] = {
            "training_rows": int(sum(s != source for s in sets["train"]["source"])), "test_rows": len(truth),
            "test_unsafe": int(truth.sum()), "threshold": result["threshold"],
            **binary_metrics(truth, scores >= result["threshold"])}
        write_report()
    return report


def fold_line(source: str, fold: dict[str, Any]) -> str:
    """One leave-one-source-out fold as the tuning and add_folds commands print it."""
    return (f"left out {source:>14}: F1 {fold['f1']:.3f} precision {fold['precision']:.3f} recall {fold['recall']:.3f} "
            f"FPR {fold['fpr']:.3f} ({fold['test_rows']} rows)")


def main(args: argparse.Namespace) -> int:
    report = tune(args)
    print(f"{'learning rate':>13} {'calibration F1':>15} {'FPR':>6} {'threshold':>9} {'seconds':>8}")
    for result in [*report["sweep"], *report["seeds"]]:
        pool = result["calibration_pool"]
        print(f"{result['recipe']['learning_rate']:>13g} {pool['f1']:>15.4f} {pool['fpr']:>6.3f} "
              f"{result['threshold']:>9.3f} {result['seconds']:>8.1f}   seed {result['recipe']['seed']}")
    for source, fold in report["leave_one_out"].items():
        print(fold_line(source, fold))
    print(f"wrote {args.output} in {report['seconds']:.0f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lab.guard.tune_encoder", description=__doc__.splitlines()[0])
    add_common_arguments(parser, config_help="unused: everything comes from the bundle and the flags")
    parser.add_argument("--bundle", type=Path, required=True, help="from python -m lab.guard.tuning_bundle")
    parser.add_argument("--base", type=Path, required=True, help="the MiniLM folder (sentence-transformers layout)")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--learning-rates", type=float, nargs="+", default=[5e-4], help="one model per rate; best kept")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--length-window", type=int, default=Recipe.length_window,
                        help="batches of similar length from windows of this many batches (1: plain shuffle)")
    parser.add_argument("--seeds", type=int, nargs="*", default=[], help="extra seeds of the kept recipe")
    parser.add_argument("--max-fpr", type=float, default=0.05, help="calibration: largest false-positive rate")
    parser.add_argument("--leave-one-out", nargs="*", metavar="SOURCE",
                        help="also train and test the held-out source folds: every fold of the bundle, or those named")
    parser.add_argument("--folds-only", action="store_true",
                        help="train only the --leave-one-out folds, with the recipe the flags give (no kept model)")
    return parser


if __name__ == "__main__":
    parsed = build_parser().parse_args()
    configure_logging(parsed.debug)
    sys.exit(run_cli(lambda: main(parsed), debug=parsed.debug))
