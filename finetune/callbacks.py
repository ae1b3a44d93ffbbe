"""Trainer callbacks: metrics as JSON lines (`metrics.jsonl`), and the resolved config in every checkpoint."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "ulma_config.yaml"


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class JsonlMetricsCallback(TrainerCallback):
    """Appends every log to `<output_dir>/metrics.jsonl`. On resume it first drops the lines logged after
    the checkpoint, which the resumed run logs again, so the file reads as one uninterrupted run."""

    def __init__(self, output_dir: str | Path) -> None:
        self.path = Path(output_dir) / METRICS_FILE

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if not state.is_world_process_zero or not self.path.is_file():
            return
        kept = [entry for entry in read_metrics(self.path) if entry.get("step", 0) <= state.global_step]
        self.path.write_text("".join(json.dumps(entry) + "\n" for entry in kept), encoding="utf-8")

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not state.is_world_process_zero or not logs:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": state.global_step, **logs}) + "\n")


class ConfigInCheckpointCallback(TrainerCallback):
    """Writes the resolved `UlmaConfig` as YAML into each checkpoint folder, so every checkpoint says how it
    was made (`training_args.bin` holds the same, but only for Python)."""

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if state.is_world_process_zero:
            args.save_yaml(Path(args.output_dir) / f"checkpoint-{state.global_step}" / CONFIG_FILE)
