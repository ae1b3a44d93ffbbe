"""ULMA training throughput: the standard QLoRA stack vs. the project's trainer, in one process and one run.

    python -m benchmarks.train_throughput                      # Llama-3.1-8B shape, needs a CUDA GPU
    python -m benchmarks.train_throughput --shape tiny --steps 3 --device cpu   # smoke test

(a) baseline: transformers + PEFT + bitsandbytes NF4 loaded the standard way (peft's
    prepare_model_for_kbit_training), LoRA r16 on all linear layers, SDPA, gradient checkpointing,
    right-padded batches of a fixed row count, full-vocabulary logits, and a reference forward with the
    adapter disabled every step, then the ULMA loss.
(b) project: the model from the project's loader and the real `UlmaTrainer` on the same rows with its default
    speed flags (bf16 frozen weights, reference log-probs precomputed once and only for the rows whose loss
    reads them, length-grouped token-budget micro-batches, logits only at response positions), optionally
    with Liger Kernel's Triton RMSNorm/SwiGLU/RoPE (`:liger`). Both start from the same adapter weights.
Rows are real HH pairs (../shared/data/hh-rlhf) tokenized by the project's own chat-template code, so the
sequence lengths are the real ones. Effective tokens are the non-padding tokens of the rows trained on. The
project's time includes its one-off reference pass over the rows it trains on (amortised over one epoch).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmarks.llama_shape import save_random_model
from configs.settings import (
    EMBEDDED_GENERATOR,
    PROJECT_ROOT,
    SHARED_DATA_DIR,
    LoraSettings,
    ModelSettings,
    QuantizationSettings,
)
from finetune.collator import PaddedCollator
from finetune.data import DataReport, load_pairs, pointwise_rows, tokenize_rows
from finetune.forward import response_logps
from finetune.losses import pointwise_loss
from finetune.modeling import load_model, load_tokenizer

logger = logging.getLogger(__name__)

DEFAULT_DATA = str(SHARED_DATA_DIR / "hh-rlhf" / "harmless-base-test.jsonl.gz")
RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "train_throughput.json"


@dataclass
class Measurement:
    name: str
    effective_tokens: int
    seconds: float
    peak_gb: float | None  # None on CPU
    losses: list[float]
    detail: dict[str, Any]

    @property
    def tokens_per_s(self) -> float:
        return self.effective_tokens / self.seconds

    def as_json(self) -> dict[str, Any]:
        return {
            "effective_tokens_per_s": round(self.tokens_per_s, 1),
            "peak_gb": None if self.peak_gb is None else round(self.peak_gb, 2),
            "effective_tokens": self.effective_tokens,
            "seconds": round(self.seconds, 3),
            **self.detail,
        }


def benchmark_rows(tokenizer: Any, data: str, n_rows: int, max_length: int) -> list[dict]:
    """Point-wise rows (chosen score 1, rejected score 0) of real HH pairs, tokenized by the project."""
    report = DataReport()
    pairs = load_pairs(data, report=report)[: (n_rows + 1) // 2 + 64]
    return tokenize_rows(tokenizer, pointwise_rows(pairs, report), max_length, report)[:n_rows]


def _restore(model: torch.nn.Module, initial: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in initial:
                param.copy_(initial[name])


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _reset_peak(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gb(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 1e9 if device == "cuda" else None


def load_qlora(model_dir: Path, device: str, lora_r: int, *, standard: bool) -> tuple[torch.nn.Module, Any]:
    """from_pretrained in 4-bit NF4 + LoRA (PEFT); `standard` adds prepare_model_for_kbit_training's float32
    upcast of the unquantized weights, as users' QLoRA scripts do."""
    settings = ModelSettings(
        name_or_path=str(model_dir),
        device=device,
        quantization=QuantizationSettings(load_in_4bit="always"),
    )
    lora = LoraSettings(r=lora_r, alpha=2 * lora_r, dropout=0.0)
    return load_model(settings, lora=lora, for_training=True, fp32_frozen_weights=standard)


def _batches(rows: list[dict], size: int) -> Iterator[list[dict]]:
    for start in range(0, len(rows) - size + 1, size):
        yield rows[start : start + size]


def run_baseline(
    model: torch.nn.Module,
    rows: list[dict],
    pad_id: int,
    *,
    batch_size: int,
    warmup: int,
    steps: int,
    beta: float,
    device: str,
) -> Measurement:
    """(a): padded fixed-size batches, full logits, a reference forward every step."""
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    collate = PaddedCollator(pad_id)
    batches = [collate(chunk) for chunk in _batches(rows, batch_size)][: warmup + steps]
    if len(batches) < warmup + steps:
        raise SystemExit(f"only {len(batches)} baseline batches from {len(rows)} rows; lower --steps")

    def step(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        loss = ulma_loss(model, batch, beta, device, response_only=False)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()  # read after the timed loop: no host sync per step, as in the Trainer

    for batch in batches[:warmup]:
        step(batch)
    _sync(device)
    _reset_peak(device)
    losses, tokens = [], 0
    start = time.perf_counter()
    for batch in batches[warmup:]:
        losses.append(step(batch))
        tokens += int(batch["attention_mask"].sum())
    _sync(device)
    seconds = time.perf_counter() - start
    padded = sum(int(b["attention_mask"].numel()) for b in batches[warmup:])
    detail = {"batch_rows": batch_size, "steps": steps, "padding_share": round(1 - tokens / padded, 3)}
    return Measurement("baseline", tokens, seconds, _peak_gb(device), [float(x) for x in losses], detail)


def ulma_loss(
    model: torch.nn.Module, batch: dict, beta: float, device: str, *, response_only: bool
) -> torch.Tensor:
    """The ULMA loss of `batch`: the policy's log-probs, and the adapter-disabled reference's in the same call."""
    batch = {k: v.to(device) for k, v in batch.items()}
    causal_lm = model.get_base_model()
    # bf16 autocast, as transformers' Trainer runs with bf16=True: the fair standard setting.
    with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
        sums, counts = response_logps(
            model, causal_lm, batch, response_only_logits=response_only, chunk_size=1024
        )
        with torch.no_grad(), model.disable_adapter():
            ref_sums, _ = response_logps(
                model, causal_lm, batch, response_only_logits=response_only, chunk_size=1024
            )
        return pointwise_loss(
            sums / counts, ref_sums / counts, batch["score"], loss_type="ulma", beta=beta
        ).loss


class _TokenCounter:
    """Wraps the trainer's collator and counts the non-padding tokens of every micro-batch it builds."""

    def __init__(self, collate: Callable[[list[dict]], dict]) -> None:
        self.collate = collate
        self.tokens = 0

    def __call__(self, features: list[dict]) -> dict:
        self.tokens += sum(len(f["input_ids"]) for f in features)
        return self.collate(features)


@dataclass(frozen=True)
class Variant:
    """One project run: `TOKENS:on|off[:option...]`. Options switch a lever away from the trainer's default
    (packed, fp32, allref, stepref, fulllogits) or add Liger kernels (liger), so each lever can be measured
    alone against the run without it."""

    max_tokens: int
    gradient_checkpointing: bool
    options: frozenset[str]

    OPTIONS = frozenset({"grouped", "packed", "liger", "fp32", "allref", "stepref", "fulllogits"})
    ABLATIONS = frozenset({"fp32", "allref", "stepref", "fulllogits"})

    @classmethod
    def parse(cls, text: str) -> Variant:
        budget, *rest = text.split(":")
        checkpointing, options = (rest[0], rest[1:]) if rest else ("", [])
        unknown = set(options) - cls.OPTIONS
        if not budget.isdigit() or checkpointing not in ("on", "off") or unknown:
            raise SystemExit(f"bad variant {text!r}: TOKENS:on|off[:{'|'.join(sorted(cls.OPTIONS))}]...")
        if {"fp32", "liger"} <= set(options):
            raise SystemExit(
                f"{text}: fp32 runs share the baseline's model, which must stay without Liger's patches"
            )
        return cls(int(budget), checkpointing == "on", frozenset(options))

    @property
    def is_ablation(self) -> bool:
        """A run with one of the trainer's speed levers switched off: measured, never reported as the project."""
        return bool(self.options & self.ABLATIONS)

    @property
    def name(self) -> str:
        extra = sorted(self.options - {"grouped"})
        return (
            f"{self.max_tokens} tok/batch, ckpt {'on' if self.gradient_checkpointing else 'off'}"
            + "".join(f", {option}" for option in extra)
        )


def run_order(variants: list[Variant]) -> list[Variant]:
    """fp32 runs first (on the baseline's float32-upcast model), then bf16 ones; Liger runs last in each group,
    because Liger patches modules (and transformers' RoPE function) for the rest of the process."""
    return sorted(variants, key=lambda v: ("fp32" not in v.options, "liger" in v.options))


def run_project(
    model: torch.nn.Module,
    tokenizer: Any,
    rows: list[dict],
    variant: Variant,
    *,
    warmup: int,
    steps: int,
    beta: float,
    device: str,
    output_dir: Path,
) -> Measurement:
    """(b): the real UlmaTrainer with its speed flags, timed between the end of warm-up and the last step."""
    import datasets
    from transformers import TrainerCallback

    from finetune.ulma_config import UlmaConfig
    from finetune.ulma_trainer import UlmaTrainer

    options = variant.options
    args = UlmaConfig(
        output_dir=str(output_dir),
        max_steps=warmup + steps,
        per_device_train_batch_size=1,
        gradient_accumulation_steps=1,
        max_tokens_per_batch=variant.max_tokens,
        max_length=min(variant.max_tokens, 2048),
        beta=beta,
        learning_rate=1e-5,
        warmup_steps=0,
        gradient_checkpointing=variant.gradient_checkpointing,
        padding_free="packed" in options,
        use_liger_kernel="liger" in options,
        reference_for_positives="allref" in options,
        precompute_ref_logps="stepref" not in options,
        response_only_logits="fulllogits" not in options,
        eval_strategy="no",
        save_strategy="no",
        logging_steps=10_000,
        bf16=device == "cuda",
        use_cpu=device == "cpu",
        disable_tqdm=True,
        dataloader_pin_memory=False,
    )
    dataset = datasets.Dataset.from_list([{**row, "length": len(row["input_ids"])} for row in rows])
    total_tokens = sum(dataset["length"])
    _reset_peak(device)
    start = time.perf_counter()
    trainer = UlmaTrainer(model, args, train_dataset=dataset, processing_class=tokenizer)
    _sync(device)
    reference_seconds = time.perf_counter() - start
    counter = _TokenCounter(trainer.data_collator)
    trainer.data_collator = counter
    marks: dict[int, tuple[float, int]] = {}

    class Clock(TrainerCallback):
        def on_step_end(self, _args: Any, state: Any, _control: Any, **_: Any) -> None:
            if state.global_step in (warmup, warmup + steps):
                _sync(device)
                marks[state.global_step] = (time.perf_counter(), counter.tokens)

    trainer.add_callback(Clock())
    trainer.train()
    (t0, n0), (t1, n1) = marks[warmup], marks[warmup + steps]
    tokens = n1 - n0
    # The reference pass ran over every row once; charge the share of it that the timed tokens used.
    reference_share = reference_seconds * tokens / total_tokens
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    detail = {
        "max_tokens_per_batch": variant.max_tokens,
        "gradient_checkpointing": variant.gradient_checkpointing,
        "layout": "packed" if args.padding_free else "length-grouped padded",
        "steps": steps,
        "step_seconds": round(t1 - t0, 3),
        "reference_pass_seconds_charged": round(reference_share, 3),
        "flags": {
            "precompute_ref_logps": args.precompute_ref_logps,
            "reference_for_positives": args.reference_for_positives,
            "padding_free": args.padding_free,
            "response_only_logits": args.response_only_logits,
            "fp32_frozen_weights": "fp32" in options,
            "use_liger_kernel": args.use_liger_kernel,
        },
    }
    return Measurement(
        f"project ({variant.name})", tokens, (t1 - t0) + reference_share, _peak_gb(device), losses, detail
    )


def print_table(baseline: Measurement, projects: list[Measurement]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="ULMA training throughput (effective = non-padding tokens)")
    for column in ("run", "effective tokens/s", "peak GB", "ratio vs baseline"):
        table.add_column(column, justify="right" if column != "run" else "left")
    for m in [baseline, *projects]:
        table.add_row(
            m.name,
            f"{m.tokens_per_s:,.0f}",
            "-" if m.peak_gb is None else f"{m.peak_gb:.1f}",
            f"{m.tokens_per_s / baseline.tokens_per_s:.2f}x",
        )
    Console().print(table)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=["llama31-8b", "tiny"], default="llama31-8b")
    parser.add_argument("--model-dir", type=Path, default=Path("/tmp/bench-model"))
    parser.add_argument(
        "--data", default=DEFAULT_DATA, help="HH pairs (.jsonl.gz) whose lengths the rows follow"
    )
    parser.add_argument("--rows", type=int, default=1200, help="point-wise rows tokenized for the run")
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--baseline-batch", type=int, default=8, help="rows per padded baseline batch")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["8192:on", "16384:on"],
        help="project runs as TOKENS_PER_MICRO_BATCH:on|off[:OPTION...] (gradient checkpointing; options: packed, "
        "liger, and the ablations fp32, allref, stepref, fulllogits; see Variant)",
    )
    parser.add_argument(
        "--tokenizer", default=EMBEDDED_GENERATOR, help="tokenizer that turns HH text into rows"
    )
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument(
        "--baseline-warmup",
        type=int,
        help="baseline warm-up steps (default --warmup); its ~1 s steps are cheap, "
        "and two warm-up steps left its rate varying 930-1,497 tokens/s between H100 runs",
    )
    parser.add_argument("--baseline-steps", type=int, help="baseline timed steps (default --steps)")
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--max-peak-gb", type=float, default=24.0, help="the project's memory ceiling")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    # The embedded model's tokenizer (vocab 49,152 < 128,256) turns real HH text into the rows' token ids.
    tokenizer = load_tokenizer(ModelSettings(name_or_path=args.tokenizer))
    model_dir = save_random_model(args.shape, args.model_dir, args.device, tokenizer)
    rows = benchmark_rows(tokenizer, args.data, args.rows, args.max_length)
    variants = run_order([Variant.parse(text) for text in args.variants])
    model, tokenizer = load_qlora(model_dir, args.device, lora_r=16, standard=True)
    # Every run starts from the same adapter weights; the project's model gets the baseline's initial ones.
    initial = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    check_batch = PaddedCollator(tokenizer.pad_token_id)(rows[: args.baseline_batch])
    with torch.no_grad():  # the loss before any step, on both paths
        same_batch = {
            "baseline": float(ulma_loss(model, check_batch, args.beta, args.device, response_only=False))
        }
    baseline = run_baseline(
        model,
        rows,
        tokenizer.pad_token_id,
        batch_size=args.baseline_batch,
        warmup=args.warmup if args.baseline_warmup is None else args.baseline_warmup,
        steps=args.steps if args.baseline_steps is None else args.baseline_steps,
        beta=args.beta,
        device=args.device,
    )
    projects = []
    for variant in variants:
        if "fp32" not in variant.options and "project" not in same_batch:
            del model  # the baseline's optimizer and batches went with run_baseline; this frees the weights
            _reset_peak(args.device)
            model, tokenizer = load_qlora(model_dir, args.device, lora_r=16, standard=False)
            _restore(model, initial)
            with torch.no_grad():
                same_batch["project"] = float(
                    ulma_loss(model, check_batch, args.beta, args.device, response_only=True)
                )
        _restore(model, initial)
        model.gradient_checkpointing_disable()
        projects.append(
            run_project(
                model,
                tokenizer,
                rows,
                variant,
                warmup=args.warmup,
                steps=args.steps,
                beta=args.beta,
                device=args.device,
                output_dir=args.model_dir.parent / f"bench-run-{len(projects)}",
            )
        )
        logger.info(
            "%s: %.0f effective tokens/s (baseline %.0f)",
            projects[-1].name,
            projects[-1].tokens_per_s,
            baseline.tokens_per_s,
        )
    print_table(baseline, projects)
    # The reported project run: the fastest that keeps every speed lever on and fits the memory ceiling.
    complete = [m for v, m in zip(variants, projects, strict=True) if not v.is_ablation] or projects
    fitting = [m for m in complete if m.peak_gb is None or m.peak_gb <= args.max_peak_gb] or complete
    best = max(fitting, key=lambda m: m.tokens_per_s)
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    result = {
        "device": device_name,
        "shape": args.shape,
        "data": Path(args.data).name,
        "rows": len(rows),
        "baseline": baseline.as_json(),
        "project": best.as_json(),
        "ratio": round(best.tokens_per_s / baseline.tokens_per_s, 3),
        "project_variants": {p.name: p.as_json() for p in projects},
        # The ULMA loss of the first baseline batch before training: the standard path (float32-upcast weights,
        # full logits) vs. the project's (bf16 weights, response-only logits), same adapter weights.
        "same_batch_loss": {
            **same_batch,
            "relative_difference": round(
                abs(same_batch["project"] - same_batch["baseline"]) / same_batch["baseline"], 6
            )
            if "project" in same_batch
            else None,
        },
        "max_peak_gb": args.max_peak_gb,
        "versions": {"torch": torch.__version__, **_versions()},
        "command": "python -m benchmarks.train_throughput "
        + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    logger.info("wrote %s (ratio %.2fx)", args.out, result["ratio"])


def _versions() -> dict[str, str]:
    import importlib.metadata

    versions = {}
    for package in ("transformers", "peft", "bitsandbytes", "liger-kernel"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


if __name__ == "__main__":
    main()
