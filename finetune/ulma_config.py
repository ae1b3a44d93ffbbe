"""`UlmaConfig`: every option of a ULMA run, a dataclass over transformers' `TrainingArguments`.

Each field carries `help` metadata, so `python -m finetune --help` documents it, and option combinations that
cannot work are rejected in `__post_init__` with a message naming the flag to change.
"""

from __future__ import annotations

import importlib.util
import json
import typing
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from transformers import TrainingArguments

from configs.errors import AppError
from configs.settings import (
    EMBEDDED_GENERATOR,
    ConfigError,
    LoraSettings,
    ModelSettings,
    QuantizationSettings,
    read_yaml,
)
from finetune.losses import NEEDS_REFERENCE, LossType

HH_GOLDEN = "Unified-Language-Model-Alignment/Anthropic_HH_Golden"


class UlmaConfigError(AppError, ValueError):
    """An option or combination of options that cannot work; the message says which flag to change."""


@dataclass
class UlmaConfig(TrainingArguments):
    # ------------------------------------------------------------ model
    model_name_or_path: str = field(
        default=EMBEDDED_GENERATOR,
        metadata={
            "help": "Base model: hub id, local folder, or 'embedded:smollm2-135m-instruct' (runs on CPU)."
        },
    )
    load_in_4bit: Literal["always", "auto", "never"] = field(
        default="always",
        metadata={"help": "Quantize the base to 4-bit NF4 (QLoRA): always | auto (only on CUDA) | never."},
    )
    bnb_4bit_compute_dtype: Literal["bfloat16", "float16", "float32"] = field(
        default="bfloat16",
        metadata={"help": "Compute dtype of the 4-bit layers: bfloat16 | float16 | float32."},
    )
    bnb_4bit_quant_storage: Literal["uint8", "bfloat16", "float16", "float32"] = field(
        default="uint8",
        metadata={
            "help": "dtype the packed 4-bit weights are stored in: uint8, or (FSDP, which shards only float "
            "tensors together with the rest) the model dtype, bfloat16."
        },
    )
    model_dtype: Literal["auto", "bfloat16", "float16", "float32"] = field(
        default="auto",
        metadata={
            "help": "dtype of the unquantized weights: auto (bf16 on GPU, fp32 on CPU) | bfloat16 | float32."
        },
    )
    attn_implementation: str = field(
        default="sdpa",
        metadata={
            "help": "Attention: sdpa | flash_attention_2 | flex_attention | eager (all handle packing)."
        },
    )
    fp32_frozen_weights: bool = field(
        default=False,
        metadata={
            "help": "Cast the frozen unquantized weights (embeddings, norms, lm_head) to float32, as peft's "
            "prepare_model_for_kbit_training does; off keeps them and the residual stream in bf16 (faster)."
        },
    )
    model_cache_dir: str | None = field(
        default=None,
        metadata={"help": "Where the embedded model is converted and cached (default ~/.cache)."},
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (scale = alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA branch."})
    lora_target_modules: str = field(
        default="all-linear",
        metadata={
            "help": "Modules that get LoRA: 'all-linear' or comma-separated names, e.g. 'q_proj,v_proj'."
        },
    )
    # ------------------------------------------------------------ data
    dataset: str = field(
        default=HH_GOLDEN,
        metadata={
            "help": "Hub dataset id, or a local .jsonl/.jsonl.gz/.json/.parquet file (relative paths: the "
            "working directory, then the repository root) with chosen/rejected transcripts, or text|messages "
            "+ score."
        },
    )
    dataset_split: str = field(default="train", metadata={"help": "Training split of a hub dataset."})
    eval_split: str | None = field(
        default="test",
        metadata={
            "help": "Held-out split of a hub dataset; local files (or eval_split none) use val_fraction."
        },
    )
    val_fraction: float = field(
        default=0.05,
        metadata={"help": "Share of the records held out for evaluation when there is no eval split."},
    )
    max_train_pairs: int | None = field(
        default=None, metadata={"help": "Use only the first N training records."}
    )
    max_eval_pairs: int | None = field(
        default=500, metadata={"help": "Use only the first N held-out records."}
    )
    dataset_num_proc: int | None = field(
        default=None, metadata={"help": "Processes for tokenizing (used above 10,000 rows)."}
    )
    max_length: int = field(
        default=1024,
        metadata={
            "help": "Tokens per row; longer rows lose their oldest turns, rows still too long are dropped."
        },
    )
    max_bad_share: float = field(
        default=0.05, metadata={"help": "Fail when more than this share of rows is malformed or too long."}
    )
    # ------------------------------------------------------------ loss
    loss_type: LossType = field(
        default="ulma",
        metadata={
            "help": "ulma (SFT on positives, reward loss on negatives) | pointwise_dpo | sft (positives)."
        },
    )
    beta: float = field(
        default=0.1, metadata={"help": "beta: scale of the implicit reward beta * log(pi / pi_ref)."}
    )
    margin: float = field(
        default=0.0,
        metadata={"help": "c: the constant in -log sigmoid(-(beta * log-ratio) - c) for negatives."},
    )
    positive_weight: float = field(
        default=1.0, metadata={"help": "Weight of the positive (score 1) rows' loss."}
    )
    negative_weight: float = field(
        default=1.0, metadata={"help": "Weight of the negative (score 0) rows' loss."}
    )
    length_normalize: bool = field(
        default=True,
        metadata={
            "help": "Use mean per-token log-probs (ULMA reference code); false sums them (as DPO does)."
        },
    )
    # ------------------------------------------------------------ speed
    precompute_ref_logps: bool = field(
        default=True,
        metadata={
            "help": "Reference log-probs once before training instead of a reference forward per step."
        },
    )
    reference_for_positives: bool = field(
        default=False,
        metadata={
            "help": "Reference log-probs for score-1 rows too. ulma's positive loss does not use them (only "
            "their reward logs do), so by default the training reference pass skips them: half the work."
        },
    )
    padding_free: bool = field(
        default=False,
        metadata={
            "help": "Pack each micro-batch into one row (position_ids restart per sequence): no padding. "
            "Best with flash_attention_2 (varlen kernels); with sdpa the packed row attends over its whole "
            "length, which measured slower on an H100 than length-grouped padded batches "
            "(max_tokens_per_batch)."
        },
    )
    response_only_logits: bool = field(
        default=True,
        metadata={"help": "Run lm_head + log-softmax only at response positions, in chunks, not everywhere."},
    )
    causal_mask_only: bool = field(
        default=True,
        metadata={
            "help": "Padded batches attend with the causal mask alone, without the padding mask: exact for every "
            "real token (padding is on the right), and sdpa can use its flash kernel."
        },
    )
    logits_chunk_size: int = field(
        default=1024, metadata={"help": "Response positions per lm_head chunk (response_only_logits)."}
    )
    ref_tokens_per_batch: int = field(
        default=16384,
        metadata={
            "help": "Tokens per batch of the reference pass (forward only: a few times the training budget)."
        },
    )
    max_tokens_per_batch: int | None = field(
        default=None,
        metadata={"help": "Micro-batches by token budget instead of per_device_train_batch_size rows."},
    )
    # ------------------------------------------------------------ TrainingArguments defaults for this recipe
    output_dir: str | None = field(
        default="outputs/ulma", metadata={"help": "Adapter, checkpoints and metrics."}
    )
    learning_rate: float = field(default=5e-5, metadata={"help": "Peak learning rate (AdamW)."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Learning-rate schedule."})
    warmup_steps: float = field(
        default=0.1, metadata={"help": "Warmup: steps, or a share of all steps if < 1."}
    )
    num_train_epochs: float = field(default=1.0, metadata={"help": "Epochs over the training rows."})
    per_device_train_batch_size: int = field(default=4, metadata={"help": "Rows per micro-batch."})
    per_device_eval_batch_size: int = field(default=8, metadata={"help": "Rows per evaluation batch."})
    gradient_accumulation_steps: int = field(
        default=4, metadata={"help": "Micro-batches per optimizer step."}
    )
    gradient_checkpointing: bool = field(
        default=True, metadata={"help": "Recompute activations in backward: less memory, ~20%% more compute."}
    )
    gradient_checkpointing_kwargs: dict[str, Any] | str | None = field(
        default_factory=lambda: {"use_reentrant": False},
        metadata={"help": "Passed to gradient_checkpointing_enable."},
    )
    logging_steps: float = field(default=10, metadata={"help": "Log every N optimizer steps."})
    eval_strategy: str = field(default="steps", metadata={"help": "When to evaluate: steps | epoch | no."})
    eval_steps: float | None = field(default=100, metadata={"help": "Evaluate every N optimizer steps."})
    save_steps: float = field(default=100, metadata={"help": "Checkpoint every N optimizer steps."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints kept."})
    report_to: None | str | list[str] = field(
        default="none", metadata={"help": "Trackers (tensorboard, wandb...)."}
    )
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep score/pair_id columns."})

    def __post_init__(self) -> None:
        if isinstance(self.lora_target_modules, list | tuple):
            self.lora_target_modules = ",".join(self.lora_target_modules)
        self._check_options()
        if self.use_liger_kernel and self.liger_kernel_config is None:
            # Only Liger's RMSNorm/SwiGLU/RoPE kernels: the loss reads hidden states (forward.py), so the model's
            # own forward must stay the transformers one, without Liger's fused loss inside it.
            self.liger_kernel_config = {"fused_linear_cross_entropy": False, "cross_entropy": False}
        with warnings.catch_warnings():
            # transformers >= 5.24 renames gradient_checkpointing to activation_checkpointing and warns; the
            # old name is the one every 5.x accepts, so it stays.
            warnings.filterwarnings(
                "ignore", message=".*gradient_checkpointing.*deprecated", category=FutureWarning
            )
            super().__post_init__()

    def _check_options(self) -> None:
        problems = []
        # Values from a YAML profile bypass argparse's choices, so the Literal fields are checked here.
        hints = typing.get_type_hints(UlmaConfig)
        for name in UlmaConfig.__annotations__:
            choices = typing.get_args(hints[name]) if typing.get_origin(hints[name]) is Literal else ()
            if choices and getattr(self, name) not in choices:
                problems.append(f"--{name} {getattr(self, name)!r} is not one of {', '.join(choices)}")
        if self.beta <= 0:
            problems.append(f"--beta must be > 0 (got {self.beta}); the ULMA paper uses 0.1")
        if not 0.0 <= self.val_fraction < 1.0:
            problems.append(f"--val_fraction must be in [0, 1) (got {self.val_fraction})")
        if not 0.0 <= self.max_bad_share <= 1.0:
            problems.append(f"--max_bad_share must be in [0, 1] (got {self.max_bad_share})")
        if self.max_length < 16:
            problems.append(
                f"--max_length {self.max_length} is too small for a chat-formatted row; use >= 256"
            )
        if self.max_tokens_per_batch is not None and self.max_tokens_per_batch < self.max_length:
            problems.append(
                f"--max_tokens_per_batch {self.max_tokens_per_batch} is below --max_length {self.max_length}:"
                " "
                "a full-length row could never fit; raise it or lower --max_length"
            )
        if self.remove_unused_columns:
            problems.append(
                "--remove_unused_columns must stay false: the loss needs the score and pair_id columns"
            )
        if self.ref_tokens_per_batch < self.max_length:
            problems.append(
                f"--ref_tokens_per_batch {self.ref_tokens_per_batch} is below --max_length "
                f"{self.max_length}; raise it"
            )
        if self.use_liger_kernel and importlib.util.find_spec("liger_kernel") is None:
            problems.append("--use_liger_kernel needs Liger Kernel (CUDA + Triton): pip install '.[gpu]'")
        if self.logits_chunk_size < 1:
            problems.append("--logits_chunk_size must be >= 1")
        if self.positive_weight < 0 or self.negative_weight < 0:
            problems.append("--positive_weight and --negative_weight must be >= 0")
        if problems:
            raise UlmaConfigError("; ".join(problems))

    @property
    def needs_reference(self) -> bool:
        return NEEDS_REFERENCE[self.loss_type]

    @property
    def positives_need_reference(self) -> bool:
        """pointwise_dpo's positive loss uses the reference; ulma's (plain log-likelihood) does not."""
        return self.loss_type == "pointwise_dpo" or self.reference_for_positives

    def model_settings(self) -> ModelSettings:
        """The serving-side settings for this base model, so training and serving load it identically."""
        extra = {"cache_dir": self.model_cache_dir} if self.model_cache_dir else {}
        return ModelSettings(
            name_or_path=self.model_name_or_path,
            adapter_path="none",  # training starts from the bare base, never from a shipped adapter
            dtype=self.model_dtype,
            quantization=QuantizationSettings(
                load_in_4bit=self.load_in_4bit,
                compute_dtype=self.bnb_4bit_compute_dtype,
                quant_storage=self.bnb_4bit_quant_storage,
            ),
            **extra,
        )

    def lora_settings(self) -> LoraSettings:
        modules = self.lora_target_modules
        targets = modules if modules == "all-linear" else [m.strip() for m in modules.split(",") if m.strip()]
        return LoraSettings(
            r=self.lora_r, alpha=self.lora_alpha, dropout=self.lora_dropout, target_modules=targets
        )

    def save_yaml(self, path: Path) -> None:
        """Every resolved option as YAML; `python -m finetune --config <path>` reproduces the run."""
        import yaml

        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(json.loads(self.to_json_string()), sort_keys=True), encoding="utf-8")


def read_profile(path: Path) -> dict[str, Any]:
    """A YAML profile of UlmaConfig fields (configs/finetune/*.yaml); an unknown key is an error naming it."""
    profile = read_yaml(path)
    unknown = sorted(set(profile) - {f.name for f in fields(UlmaConfig)})
    if unknown:
        raise ConfigError(f"{path}: unknown option(s) {', '.join(unknown)}; see python -m finetune --help")
    return profile
