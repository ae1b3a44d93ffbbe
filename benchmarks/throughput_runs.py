"""The measured runs of benchmarks/train_throughput.py; each job runs alone in a fresh process.

Jobs (a dict with `kind` and the run's settings) and what they time:
- prepare: writes the random-weight model once and reports the device and the versions.
- search:  the fair baseline's step on the longest rows at each candidate batch size: peak memory, nothing timed.
- fair:    the standard QLoRA stack as a competent user runs it (transformers Trainer-style: peft's
           prepare_model_for_kbit_training, SDPA, gradient checkpointing, bf16 autocast, gradient clipping),
           batches from transformers' LengthGroupedSampler (`group_by_length`), the reference log-probs
           precomputed once over the rows trained on (TRL's `precompute_ref_log_probs`), and the log-probs by
           Liger's fused linear cross-entropy where Liger runs (TRL's `use_liger_kernel`: the [tokens x vocab]
           logits never exist, so more rows fit under the cap), full-vocabulary logits elsewhere.
- naive:   the same stack with unsorted fixed-size batches, full-vocabulary logits and a reference forward
           every step.
- project: the real `UlmaTrainer` with the variant's flags.
Every run starts from the same adapter weights (same seed), counts the non-padding tokens of exactly its timed
steps, charges the share of any one-off reference pass those tokens used, and reports the peak memory from
the end of loading to the last step (warm-up and the reference pass included).
"""

from __future__ import annotations

import gc
import importlib.metadata
import importlib.util
import json
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmarks.llama_shape import save_random_model
from configs.settings import LoraSettings, ModelSettings, QuantizationSettings
from finetune.collator import PaddedCollator
from finetune.data import IGNORE_INDEX
from finetune.forward import capture_output, model_inputs, response_logps
from finetune.losses import pointwise_loss
from finetune.modeling import load_model, load_tokenizer

logger = logging.getLogger(__name__)

CHECK_ROWS = 8  # the loss check's batch: the first rows, padded


@dataclass(frozen=True)
class Variant:
    """One project run: `TOKENS:on|off[:option...]`, the micro-batch token budget and gradient checkpointing.
    Options switch a lever away from the trainer's default: the ablations (fp32, allref, stepref, fulllogits,
    maskpad) turn a default-on lever off, the additions (packed, liger, fa4: FlashAttention 4) turn a default-off one
    on."""

    max_tokens: int
    gradient_checkpointing: bool
    options: frozenset[str]

    ABLATIONS = frozenset({"fp32", "allref", "stepref", "fulllogits", "maskpad"})
    ADDITIONS = frozenset({"packed", "liger", "fa4"})

    @classmethod
    def parse(cls, text: str) -> Variant:
        budget, *rest = text.split(":")
        checkpointing, options = (rest[0], rest[1:]) if rest else ("", [])
        known = cls.ABLATIONS | cls.ADDITIONS
        if not budget.isdigit() or checkpointing not in ("on", "off") or set(options) - known:
            raise ValueError(f"bad variant {text!r}: TOKENS:on|off[:{'|'.join(sorted(known))}]...")
        return cls(int(budget), checkpointing == "on", frozenset(options))

    @property
    def is_ablation(self) -> bool:
        """A run with one of the trainer's speed levers switched off: measured, never reported as the project."""
        return bool(self.options & self.ABLATIONS)

    @property
    def name(self) -> str:
        return (
            f"project {self.max_tokens} tok/batch, ckpt {'on' if self.gradient_checkpointing else 'off'}"
            + "".join(f", {option}" for option in sorted(self.options))
        )


def run_job(job: dict[str, Any], result_path: str) -> None:
    """Process entry point: run `job` and write its result (or the error that stopped it) as JSON."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        result = JOBS[job["kind"]](job)
    except Exception as exc:  # noqa: BLE001 - an OOM or a failing lever ends this run only; the table says why
        logger.error("%s failed:\n%s", job.get("name", job["kind"]), traceback.format_exc())
        result = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
    Path(result_path).write_text(json.dumps(result) + "\n")


# ------------------------------------------------------------ shared pieces


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _reset_peak(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gb(device: str) -> float | None:
    return round(torch.cuda.max_memory_allocated() / 1e9, 2) if device == "cuda" else None


def _rows(job: dict[str, Any]) -> list[dict]:
    return json.loads(Path(job["rows_file"]).read_text())


def load_qlora(
    job: dict[str, Any], *, standard: bool, attention: str = "sdpa"
) -> tuple[torch.nn.Module, Any]:
    """from_pretrained in 4-bit NF4 + LoRA r16 on all linear layers; `standard` adds
    prepare_model_for_kbit_training's float32 upcast of the unquantized weights, as users' QLoRA scripts do.
    The seed makes every run's fresh adapter the same."""
    settings = ModelSettings(
        name_or_path=job["model_dir"],
        device=job["device"],
        quantization=QuantizationSettings(load_in_4bit="always"),
    )
    torch.manual_seed(0)
    lora = LoraSettings(r=16, alpha=32, dropout=0.0)
    return load_model(
        settings, lora=lora, for_training=True, fp32_frozen_weights=standard, attn_implementation=attention
    )


def _autocast(device: str) -> Any:
    # bf16 autocast, as transformers' Trainer runs with bf16=True.
    return torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")


def liger_available(device: str) -> bool:
    return device == "cuda" and importlib.util.find_spec("liger_kernel") is not None


def liger_logps(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of response log-probs, response tokens) per row the way TRL's `use_liger_kernel` computes them:
    Liger's fused linear cross-entropy over every position (prompt and padding ignored by label), lm_head
    applied chunk by chunk inside the kernel and its gradient recomputed in backward. In bf16, the dtype
    autocast gives lm_head's matmul (prepare_model_for_kbit_training keeps lm_head in float32)."""
    from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

    causal_lm = model.get_base_model()
    with capture_output(causal_lm.get_decoder()) as captured:
        model(**model_inputs(batch), use_cache=False, logits_to_keep=1)
    hidden = captured["hidden"][:, :-1]
    targets = batch["labels"][:, 1:]
    weight = causal_lm.get_output_embeddings().weight.to(torch.bfloat16)
    per_token = -LigerFusedLinearCrossEntropyLoss(ignore_index=IGNORE_INDEX, reduction="none")(
        weight, hidden.reshape(-1, hidden.shape[-1]).to(torch.bfloat16), targets.reshape(-1)
    ).view(targets.shape)
    mask = targets != IGNORE_INDEX
    return (per_token * mask).sum(-1), mask.sum(-1)


def _logps(
    model: torch.nn.Module, batch: dict, device: str, *, liger: bool = False, **options: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    with _autocast(device):
        if liger:
            return liger_logps(model, batch)
        return response_logps(model, model.get_base_model(), batch, chunk_size=1024, **options)


def _reference_sums(model: torch.nn.Module, batch: dict, device: str, **options: Any) -> torch.Tensor:
    with torch.no_grad(), model.disable_adapter():
        return _logps(model, batch, device, **options)[0]


def check_loss(model: torch.nn.Module, rows: list[dict], pad_id: int, job: dict, **options: Any) -> float:
    """The ULMA loss of the first rows before any step, for comparing the paths' losses across processes."""
    batch = _to(PaddedCollator(pad_id)(rows[:CHECK_ROWS]), job["device"])
    with torch.no_grad():
        sums, counts = _logps(model, batch, job["device"], **options)
        ref_sums = _reference_sums(model, batch, job["device"], **options)
        return float(pointwise_loss(sums / counts, ref_sums / counts, batch["score"], beta=job["beta"]).loss)


def _measurement(
    job: dict[str, Any], tokens: int, step_seconds: float, charged: float, losses: list[float]
) -> dict[str, Any]:
    """A timed run's common fields; `charged` is the share of a one-off reference pass its tokens used."""
    return {
        "effective_tokens": tokens,
        "seconds": step_seconds + charged,
        "step_seconds": step_seconds,
        "reference_pass_seconds_charged": charged,
        "peak_gb": _peak_gb(job["device"]),
        "losses": losses,
        "steps": job["steps"],
        "warmup": job["warmup"],
    }


def _to(batch: dict[str, torch.Tensor], device: str) -> dict[str, torch.Tensor]:
    return {key: value.to(device) for key, value in batch.items()}


# ------------------------------------------------------------ the standard stack


def standard_logits(fused: bool) -> dict[str, bool]:
    """The baseline's log-prob options: Liger's fused linear cross-entropy, or full-vocabulary logits."""
    return {"liger": True} if fused else {"response_only_logits": False}


class StandardLoop:
    """What transformers' Trainer does per step with bf16, gradient checkpointing, max_grad_norm=1 and AdamW,
    written out so the baseline runs without the Trainer's own overhead."""

    def __init__(self, model: torch.nn.Module, job: dict[str, Any], *, fused: bool) -> None:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
        model.train()
        self.model = model
        self.job = job
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=1e-5)
        self.logits = standard_logits(fused)

    def step(self, batch: dict[str, torch.Tensor], ref_sums: torch.Tensor | None) -> torch.Tensor:
        device = self.job["device"]
        sums, counts = _logps(self.model, batch, device, **self.logits)
        if ref_sums is None:  # the naive loop: a reference forward every step
            ref_sums = _reference_sums(self.model, batch, device, **self.logits)
        loss = pointwise_loss(
            sums / counts, ref_sums.to(sums.dtype) / counts, batch["score"], beta=self.job["beta"]
        ).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()  # read after the timed loop: no host sync per step, as in the Trainer


def length_grouped_batches(rows: list[dict], batch_rows: int, seed: int) -> list[list[dict]]:
    """The batches transformers' Trainer forms with group_by_length=True (LengthGroupedSampler)."""
    from transformers.trainer_pt_utils import LengthGroupedSampler

    generator = torch.Generator().manual_seed(seed)
    lengths = [len(row["input_ids"]) for row in rows]
    order = list(LengthGroupedSampler(batch_rows, lengths=lengths, generator=generator))
    return [
        [rows[i] for i in order[start : start + batch_rows]]
        for start in range(0, len(order) - batch_rows + 1, batch_rows)
    ]


def _timed_standard_run(
    job: dict[str, Any], *, grouped: bool, precompute_reference: bool, batch_rows: int, fused: bool
) -> dict[str, Any]:
    device, warmup, steps = job["device"], job["warmup"], job["steps"]
    model, tokenizer = load_qlora(job, standard=True)
    rows = _rows(job)
    logits = standard_logits(fused)
    loss_before = check_loss(model, rows, tokenizer.pad_token_id, job, **logits)
    chunks = (
        length_grouped_batches(rows, batch_rows, job["seed"])
        if grouped
        else [rows[s : s + batch_rows] for s in range(0, len(rows) - batch_rows + 1, batch_rows)]
    )
    if len(chunks) < warmup + steps:
        raise ValueError(f"only {len(chunks)} batches of {batch_rows} rows from {len(rows)} rows")
    collate = PaddedCollator(tokenizer.pad_token_id)
    batches = [_to(collate(chunk), device) for chunk in chunks[: warmup + steps]]
    loop = StandardLoop(model, job, fused=fused)
    _reset_peak(device)
    references: list[torch.Tensor | None] = [None] * len(batches)
    reference_seconds = 0.0
    if precompute_reference:  # once, over every row trained on, before the first step (as TRL does)
        start = time.perf_counter()
        references = [_reference_sums(model, b, device, **logits) for b in batches]
        _sync(device)
        reference_seconds = time.perf_counter() - start
    for batch, ref in zip(batches[:warmup], references[:warmup], strict=True):
        loop.step(batch, ref)
    _sync(device)
    start = time.perf_counter()
    losses = [loop.step(b, r) for b, r in zip(batches[warmup:], references[warmup:], strict=True)]
    _sync(device)
    step_seconds = time.perf_counter() - start
    tokens = sum(int(b["attention_mask"].sum()) for b in batches[warmup:])
    all_tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    padded = sum(int(b["attention_mask"].numel()) for b in batches[warmup:])
    return {
        **_measurement(
            job, tokens, step_seconds, reference_seconds * tokens / all_tokens, [float(x) for x in losses]
        ),
        "check_loss": loss_before,
        "batch_rows": batch_rows,
        "padding_share": round(1 - tokens / padded, 3),
        "logits": "liger fused linear cross-entropy" if fused else "full vocabulary",
    }


def run_fair(job: dict[str, Any]) -> dict[str, Any]:
    return _timed_standard_run(
        job,
        grouped=True,
        precompute_reference=True,
        batch_rows=job["batch_rows"],
        fused=liger_available(job["device"]),
    )


def run_naive(job: dict[str, Any]) -> dict[str, Any]:
    return _timed_standard_run(
        job, grouped=False, precompute_reference=False, batch_rows=job["batch_rows"], fused=False
    )


def run_search(job: dict[str, Any]) -> dict[str, Any]:
    """Peak memory of one fair-baseline step on the first batch the Trainer would train on at each candidate
    size (LengthGroupedSampler puts the batch with the longest row first, so that a size too large fails at
    once), from the smallest up, stopping past the cap or at OOM."""
    device = job["device"]
    model, tokenizer = load_qlora(job, standard=True)
    rows = _rows(job)
    collate = PaddedCollator(tokenizer.pad_token_id)
    loop = StandardLoop(model, job, fused=liger_available(device))
    peaks: dict[str, float | None] = {}
    for size in sorted(job["sizes"]):
        _reset_peak(device)
        try:
            batch = _to(collate(length_grouped_batches(rows, size, job["seed"])[0]), device)
            loop.step(batch, _reference_sums(model, batch, device, **loop.logits))
            _sync(device)
        except torch.cuda.OutOfMemoryError:
            peaks[str(size)] = float("inf")
            break
        finally:
            batch = None
            loop.optimizer.zero_grad(set_to_none=True)
        peaks[str(size)] = _peak_gb(device)
        if device == "cuda" and peaks[str(size)] > job["cap_gb"]:
            break
    fitting = [int(s) for s, peak in peaks.items() if peak is None or peak <= job["cap_gb"]]
    return {"peaks_gb": peaks, "batch_rows": max(fitting) if fitting else None}


# ------------------------------------------------------------ the project's trainer


class _TokenLedger:
    """Wraps the trainer's collator and records each micro-batch's non-padding tokens in the order built; the
    dataloader builds batches ahead of the step that uses them, so a running total would read one batch ahead."""

    def __init__(self, collate: Callable[[list[dict]], dict]) -> None:
        self.collate = collate
        self.tokens: list[int] = []

    def __call__(self, features: list[dict]) -> dict:
        self.tokens.append(sum(len(f["input_ids"]) for f in features))
        return self.collate(features)


def run_project(job: dict[str, Any]) -> dict[str, Any]:
    """The real UlmaTrainer, timed from the end of warm-up to the last step."""
    import datasets
    from transformers import TrainerCallback

    from finetune.ulma_config import UlmaConfig
    from finetune.ulma_trainer import UlmaTrainer

    device, warmup, steps = job["device"], job["warmup"], job["steps"]
    variant = Variant.parse(job["variant"])
    options = variant.options
    attention = "flash_attention_4" if "fa4" in options else "sdpa"
    model, tokenizer = load_qlora(job, standard="fp32" in options, attention=attention)
    rows = _rows(job)
    args = UlmaConfig(
        output_dir=job["output_dir"],
        max_steps=warmup + steps,
        per_device_train_batch_size=1,
        gradient_accumulation_steps=1,
        max_tokens_per_batch=variant.max_tokens,
        max_length=min(variant.max_tokens, 2048),
        beta=job["beta"],
        learning_rate=1e-5,
        warmup_steps=0,
        gradient_checkpointing=variant.gradient_checkpointing,
        padding_free="packed" in options,
        use_liger_kernel="liger" in options,
        reference_for_positives="allref" in options,
        precompute_ref_logps="stepref" not in options,
        response_only_logits="fulllogits" not in options,
        causal_mask_only="maskpad" not in options,
        eval_strategy="no",
        save_strategy="no",
        logging_steps=10_000,
        bf16=device == "cuda",
        use_cpu=device == "cpu",
        disable_tqdm=True,
        dataloader_pin_memory=False,
        seed=job["seed"],
    )
    loss_before = check_loss(
        model,
        rows,
        tokenizer.pad_token_id,
        job,
        response_only_logits=args.response_only_logits,
        causal_mask_only=args.causal_mask_only,
    )
    dataset = datasets.Dataset.from_list([{**row, "length": len(row["input_ids"])} for row in rows])
    _reset_peak(device)
    start = time.perf_counter()
    trainer = UlmaTrainer(model, args, train_dataset=dataset, processing_class=tokenizer)
    _sync(device)
    reference_seconds = time.perf_counter() - start
    ledger = _TokenLedger(trainer.data_collator)
    trainer.data_collator = ledger
    marks: dict[int, float] = {}

    class Clock(TrainerCallback):
        def on_step_end(self, _args: Any, state: Any, _control: Any, **_: Any) -> None:
            if state.global_step in (warmup, warmup + steps):
                _sync(device)
                marks[state.global_step] = time.perf_counter()

    trainer.add_callback(Clock())
    trainer.train()
    step_seconds = marks[warmup + steps] - marks[warmup]
    tokens = sum(ledger.tokens[warmup : warmup + steps])  # one micro-batch per step
    # The reference pass ran once over every row; charge the share of it that the timed tokens used.
    charged = reference_seconds * tokens / sum(dataset["length"])
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {
        **_measurement(job, tokens, step_seconds, charged, losses),
        "check_loss": loss_before,
        "max_tokens_per_batch": variant.max_tokens,
        "gradient_checkpointing": variant.gradient_checkpointing,
        "flags": {
            "precompute_ref_logps": args.precompute_ref_logps,
            "reference_for_positives": args.reference_for_positives,
            "padding_free": args.padding_free,
            "response_only_logits": args.response_only_logits,
            "causal_mask_only": args.causal_mask_only,
            "fp32_frozen_weights": "fp32" in options,
            "use_liger_kernel": args.use_liger_kernel,
            "attention": attention,
        },
    }


def run_prepare(job: dict[str, Any]) -> dict[str, Any]:
    tokenizer = load_tokenizer(ModelSettings(name_or_path=job["tokenizer"]))
    save_random_model(job["shape"], Path(job["model_dir"]), job["device"], tokenizer)
    versions = {"torch": torch.__version__}
    for package in ("transformers", "peft", "bitsandbytes", "accelerate", "liger-kernel"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    device_name = torch.cuda.get_device_name() if job["device"] == "cuda" else "cpu"
    return {"device": device_name, "versions": versions}


JOBS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "prepare": run_prepare,
    "search": run_search,
    "fair": run_fair,
    "naive": run_naive,
    "project": run_project,
}
