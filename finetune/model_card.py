"""The adapter's README.md: what it was trained from, how, and how well it did on held-out pairs."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Any

from finetune.ulma_config import UlmaConfig

HYPERPARAMETERS = (
    "loss_type", "beta", "margin", "positive_weight", "negative_weight", "length_normalize",
    "learning_rate", "lr_scheduler_type", "warmup_steps", "num_train_epochs", "max_steps",
    "per_device_train_batch_size", "gradient_accumulation_steps", "max_tokens_per_batch", "max_length",
    "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "load_in_4bit", "bnb_4bit_compute_dtype",
    "bf16", "gradient_checkpointing", "precompute_ref_logps", "padding_free", "response_only_logits", "seed",
)  # fmt: skip


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def _table(values: dict[str, Any]) -> str:
    rows = "\n".join(
        f"| {key} | {value:.4g} |" if isinstance(value, float) else f"| {key} | {value} |"
        for key, value in values.items()
    )
    return "| | |\n| --- | --- |\n" + rows


# How the base was held in training, and so how the service loads it for this adapter
# (finetune.modeling.served_precision): refusals move with the base's precision.
PRECISION = {
    "always": (
        "a 4-bit NF4 base (QLoRA)",
        (
            "Serve it on a 4-bit NF4 base (`model.quantization.load_in_4bit: always`); on CPU, where bitsandbytes "
            "4-bit is slow, a full-precision base changes the arithmetic it was validated in."
        ),
    ),
    "auto": (
        "a 4-bit NF4 base on CUDA, a full-precision one on CPU (QLoRA where a GPU trained it)",
        "The service loads the base as it trained: 4-bit NF4 on CUDA, full precision on CPU.",
    ),
    "never": (
        "a full-precision base (no 4-bit)",
        (
            "With `model.quantization.load_in_4bit: auto` (the default) the service serves this adapter on a "
            "full-precision base everywhere: bf16 on CUDA, float32 on CPU, not NF4, because it was trained and "
            "validated so. An explicit `always` overrides that."
        ),
    ),
}


def render_model_card(
    config: UlmaConfig, data: dict[str, Any], final_metrics: dict[str, float], global_step: int
) -> str:
    hyperparameters = {name: _plain(getattr(config, name)) for name in HYPERPARAMETERS}
    quality = {
        key: value for key, value in final_metrics.items() if not key.endswith(("runtime", "per_second"))
    }
    skipped = data["train_report"]["skipped"]
    trained_on, served = PRECISION[config.load_in_4bit]
    tags = "ulma, qlora, lora" if config.load_in_4bit == "always" else "ulma, lora"
    return f"""---
library_name: peft
base_model: {config.model_name_or_path}
tags: [{tags}, safety-alignment]
---
# ULMA safety adapter for `{config.model_name_or_path}`

A LoRA adapter trained with ULMA (point-wise preference alignment: SFT on positive responses, a
reference-anchored sigmoid loss on negative ones) on {trained_on}, by `python -m finetune`.

## Precision
{served}

## Data
- Source: `{data["source"]}`
- sha256 of the records used (train + held-out, canonical JSON): `{data["sha256"]}`
- Records: {data["train_records"]} train, {data["eval_records"]} held-out; point-wise rows:
  {data["train_rows"]} train ({data["train_positive_rows"]} positive), {data["eval_rows"]} held-out
- Training rows skipped: {json.dumps(skipped) if skipped else "none"}

## Hyperparameters
{_table(hyperparameters)}

Optimizer steps: {global_step}

## Final held-out metrics
{_table(quality) if quality else "No held-out evaluation was run."}

Preference accuracy: the share of held-out pairs where the adapter's implicit reward
`beta * log(pi / pi_ref)` ranks the chosen response above the rejected one.

## Use
```python
from configs.settings import ModelSettings
from finetune.modeling import load_model

settings = ModelSettings(name_or_path="{config.model_name_or_path}", adapter_path="<this folder>")
model, tokenizer = load_model(settings)
```
The resolved training configuration is in `ulma_config.yaml`, the metrics per step in `metrics.jsonl`.
"""


def write_model_card(
    adapter_dir: Path,
    config: UlmaConfig,
    data: dict[str, Any],
    final_metrics: dict[str, float],
    global_step: int,
) -> Path:
    path = Path(adapter_dir) / "README.md"
    path.write_text(render_model_card(config, data, final_metrics, global_step), encoding="utf-8")
    return path
