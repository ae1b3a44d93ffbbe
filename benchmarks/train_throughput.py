"""ULMA training throughput: the standard QLoRA stack vs. the project's trainer, in one process and one run.

    python -m benchmarks.train_throughput                      # Llama-3.1-8B shape, needs a CUDA GPU
    python -m benchmarks.train_throughput --shape tiny --steps 3 --device cpu   # smoke test

(a) baseline: transformers + PEFT + bitsandbytes NF4, LoRA r16 on all linear layers, SDPA, gradient
    checkpointing, right-padded batches of a fixed row count, full-vocabulary logits, and a reference forward
    with the adapter disabled every step, then the ULMA loss.
(b) project: the real `ULMATrainer` on the same rows with its default speed flags (reference log-probs
    precomputed once, token-budget micro-batches without padding, logits only at response positions).
Rows are real HH pairs (../shared/data/hh-rlhf) tokenized by the project's own chat-template code, so the
sequence lengths are the real ones. Effective tokens are the non-padding tokens of the rows trained on. The
project's time includes its one-off reference pass over the rows it trains on (amortised over one epoch).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmarks.llama_shape import save_random_model
from configs.settings import EMBEDDED_GENERATOR, PROJECT_ROOT, LoraSettings, ModelSettings, QuantizationSettings
from finetune.collator import PaddedCollator
from finetune.data import DataReport, load_pairs, pointwise_rows, tokenize_rows
from finetune.forward import full_logits_logps
from finetune.losses import pointwise_loss
from finetune.modeling import load_model, load_tokenizer

logger = logging.getLogger(__name__)

DEFAULT_DATA = str(PROJECT_ROOT.parent / "shared" / "data" / "hh-rlhf" / "harmless-base-test.jsonl.gz")
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


def load_qlora(model_dir: Path, device: str, lora_r: int) -> tuple[torch.nn.Module, Any]:
    """The user's path: from_pretrained in 4-bit NF4 + prepare_model_for_kbit_training + LoRA (PEFT)."""
    settings = ModelSettings(
        name_or_path=str(model_dir),
        device=device,
        quantization=QuantizationSettings(load_in_4bit="always"),
    )
    return load_model(settings, lora=LoraSettings(r=lora_r, alpha=2 * lora_r, dropout=0.0), for_training=True)


def _batches(rows: list[dict], size: int) -> Iterator[list[dict]]:
    for start in range(0, len(rows) - size + 1, size):
        yield rows[start : start + size]


def run_baseline(
    model: torch.nn.Module, rows: list[dict], pad_id: int, *, batch_size: int, warmup: int, steps: int,
    beta: float, device: str,
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

    def step(batch: dict[str, torch.Tensor]) -> float:
        batch = {k: v.to(device) for k, v in batch.items()}
        # bf16 autocast, as transformers' Trainer runs with bf16=True: the fair standard setting.
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            sums, counts = full_logits_logps(model, batch)
            with torch.no_grad(), model.disable_adapter():
                ref_sums, _ = full_logits_logps(model, batch)
            out = pointwise_loss(sums / counts, ref_sums / counts, batch["score"], loss_type="ulma", beta=beta)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(out.loss)

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
    return Measurement("baseline", tokens, seconds, _peak_gb(device), losses, detail)


class _TokenCounter:
    """Wraps the trainer's collator and counts the non-padding tokens of every micro-batch it builds."""

    def __init__(self, collate: Callable[[list[dict]], dict]) -> None:
        self.collate = collate
        self.tokens = 0

    def __call__(self, features: list[dict]) -> dict:
        self.tokens += sum(len(f["input_ids"]) for f in features)
        return self.collate(features)


def run_project(
    model: torch.nn.Module, tokenizer: Any, rows: list[dict], *, max_tokens: int, gradient_checkpointing: bool,
    padding_free: bool, warmup: int, steps: int, beta: float, device: str, output_dir: Path,
) -> Measurement:
    """(b): the real UlmaTrainer with its speed flags, timed between the end of warm-up and the last step."""
    import datasets
    from transformers import TrainerCallback

    from finetune.ulma_config import UlmaConfig
    from finetune.ulma_trainer import UlmaTrainer

    args = UlmaConfig(
        output_dir=str(output_dir),
        max_steps=warmup + steps,
        per_device_train_batch_size=1,
        gradient_accumulation_steps=1,
        max_tokens_per_batch=max_tokens,
        max_length=min(max_tokens, 2048),
        beta=beta,
        learning_rate=1e-5,
        warmup_steps=0,
        gradient_checkpointing=gradient_checkpointing,
        padding_free=padding_free,
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
        "max_tokens_per_batch": max_tokens,
        "gradient_checkpointing": gradient_checkpointing,
        "layout": "packed" if padding_free else "length-grouped padded",
        "steps": steps,
        "step_seconds": round(t1 - t0, 3),
        "reference_pass_seconds_charged": round(reference_share, 3),
        "flags": {
            "precompute_ref_logps": args.precompute_ref_logps,
            "padding_free": args.padding_free,
            "response_only_logits": args.response_only_logits,
        },
    }
    return Measurement(
        f"project ({max_tokens} tok/batch, {'packed' if padding_free else 'grouped'}, "
        f"ckpt {'on' if gradient_checkpointing else 'off'})",
        tokens, (t1 - t0) + reference_share, _peak_gb(device), losses, detail,
    )


def print_table(baseline: Measurement, projects: list[Measurement]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="ULMA training throughput (effective = non-padding tokens)")
    for column in ("run", "effective tokens/s", "peak GB", "ratio vs baseline"):
        table.add_column(column, justify="right" if column != "run" else "left")
    for m in [baseline, *projects]:
        table.add_row(m.name, f"{m.tokens_per_s:,.0f}", "-" if m.peak_gb is None else f"{m.peak_gb:.1f}", f"{m.tokens_per_s / baseline.tokens_per_s:.2f}x")
    Console().print(table)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=["llama31-8b", "tiny"], default="llama31-8b")
    parser.add_argument("--model-dir", type=Path, default=Path("/tmp/bench-model"))
    parser.add_argument("--data", default=DEFAULT_DATA, help="HH pairs (.jsonl.gz) whose lengths the rows follow")
    parser.add_argument("--rows", type=int, default=1200, help="point-wise rows tokenized for the run")
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--baseline-batch", type=int, default=8, help="rows per padded baseline batch")
    parser.add_argument(
        "--variants", nargs="+", default=["8192:on", "16384:on"],
        help="project runs as TOKENS_PER_MICRO_BATCH:on|off[:packed|grouped] (gradient checkpointing, layout)",
    )
    parser.add_argument("--tokenizer", default=EMBEDDED_GENERATOR, help="tokenizer that turns HH text into rows")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
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
    model, tokenizer = load_qlora(model_dir, args.device, lora_r=16)
    # Every run starts from the same adapter weights; reloading the 4-bit base per run would cost minutes.
    initial = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    baseline = run_baseline(
        model, rows, tokenizer.pad_token_id, batch_size=args.baseline_batch, warmup=args.warmup,
        steps=args.steps, beta=args.beta, device=args.device,
    )
    projects = []
    for variant in args.variants:
        budget, checkpointing, layout = (variant.split(":") + ["packed"])[:3]
        _restore(model, initial)
        model.gradient_checkpointing_disable()
        projects.append(
            run_project(
                model, tokenizer, rows, max_tokens=int(budget), gradient_checkpointing=checkpointing == "on",
                padding_free=layout == "packed", warmup=args.warmup, steps=args.steps, beta=args.beta, device=args.device,
                output_dir=args.model_dir.parent / f"bench-run-{budget}-{checkpointing}-{layout}",
            )
        )
        logger.info("%s: %.0f effective tokens/s (baseline %.0f)", projects[-1].name, projects[-1].tokens_per_s,
                    baseline.tokens_per_s)
    print_table(baseline, projects)
    fitting = [p for p in projects if p.peak_gb is None or p.peak_gb <= args.max_peak_gb] or projects
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
        "max_peak_gb": args.max_peak_gb,
        "versions": {"torch": torch.__version__, **_versions()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    logger.info("wrote %s (ratio %.2fx)", args.out, result["ratio"])


def _versions() -> dict[str, str]:
    import bitsandbytes
    import peft
    import transformers

    return {"transformers": transformers.__version__, "peft": peft.__version__, "bitsandbytes": bitsandbytes.__version__}


if __name__ == "__main__":
    main()
