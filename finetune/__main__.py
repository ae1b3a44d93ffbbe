"""`python -m finetune`: ULMA alignment of the generator with QLoRA. Parse, build, train, save.

    python -m finetune --config configs/finetune/ulma-embedded.yaml            # minutes on CPU
    python -m finetune --config configs/finetune/ulma-llama31-8b.yaml          # the production recipe
    python -m finetune --config ... --resume                                   # after a crash or kill
    accelerate launch --config_file configs/accelerate/ddp.yaml -m finetune --config ...   # several GPUs

Every `UlmaConfig` field is a flag (`--beta 0.2`, `--max-steps 50`, `--output-dir out/x`); flags override the
YAML profile. The output directory ends up holding the LoRA adapter, the tokenizer, README.md (model card),
ulma_config.yaml, data.json, metrics.jsonl, training_curves.png and the checkpoints.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from configs.cli import EXIT_INTERRUPTED, run_cli
from configs.errors import AppError

logger = logging.getLogger("finetune")

DATA_FILE = "data.json"


class ResumeError(AppError, RuntimeError):
    """The output directory and --resume disagree; the message says which to change."""


def _parser():
    from transformers import HfArgumentParser

    from finetune.ulma_config import UlmaConfig

    parser = HfArgumentParser(
        UlmaConfig,
        prog="python -m finetune",
        description="ULMA alignment with QLoRA. Flags override the --config YAML profile. "
        "A bare --debug shows tracebacks and debug logs.",
    )
    parser.add_argument(
        "--config", type=Path, help="YAML profile of UlmaConfig fields (configs/finetune/*.yaml)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="Continue from the last checkpoint in --output-dir"
    )
    return parser


def split_debug_flag(argv: list[str]) -> tuple[list[str], bool]:
    """A bare `--debug` is this CLI's traceback switch (TrainingArguments' own `debug` stays a YAML key)."""
    return [arg for arg in argv if arg != "--debug"], "--debug" in argv


def parse_args(argv: list[str]) -> tuple[Any, argparse.Namespace]:
    """(UlmaConfig, namespace with config and resume): defaults < YAML profile < flags."""
    parser = _parser()
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", type=Path)
    known, _ = pre.parse_known_args(argv)
    if known.config:
        from finetune.ulma_config import read_profile

        parser.set_defaults(**read_profile(known.config))
    config, cli = parser.parse_args_into_dataclasses(args=argv)
    return config, cli


def last_checkpoint(output_dir: Path, resume: bool) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    checkpoint = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
    if resume and checkpoint is None:
        raise ResumeError(f"--resume: no checkpoint-* folder in {output_dir} to resume from")
    if not resume and checkpoint is not None:
        raise ResumeError(
            f"{output_dir} already holds {Path(checkpoint).name}; pass --resume to continue it, "
            "or choose another --output-dir"
        )
    return checkpoint


def check_processes(config: Any) -> None:
    """A launcher's processes that the Trainer does not see as one job would each train alone and overwrite
    one another's outputs: on a machine without GPUs, transformers joins them only with --use_cpu."""
    import torch.distributed as dist

    from finetune.ulma_config import UlmaConfigError

    launched = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    if launched != config.world_size:
        raise UlmaConfigError(
            f"{launched} processes were launched, but each would train alone: on a machine without GPUs "
            "pass --use_cpu true"
        )


def final_evaluation(trainer: Any) -> dict[str, float]:
    """The held-out metrics at the last step: logged already when an evaluation fell on it, else run now."""
    step = trainer.state.global_step
    for entry in reversed(trainer.state.log_history):
        if entry.get("step") == step and "eval_loss" in entry:
            return {key: value for key, value in entry.items() if key.startswith("eval_")}
    return trainer.evaluate()


def train(config: Any, *, resume: bool = False) -> Any:
    """Train and save into `config.output_dir` (the adapter folder); returns the `UlmaTrainer`."""
    from transformers import set_seed

    from finetune.callbacks import (
        CONFIG_FILE,
        METRICS_FILE,
        ConfigInCheckpointCallback,
        JsonlMetricsCallback,
        read_metrics,
    )
    from finetune.model_card import write_model_card
    from finetune.modeling import load_model, load_tokenizer
    from finetune.plots import CURVES_FILE, plot_training_curves
    from finetune.prepare import prepare_data
    from finetune.ulma_trainer import UlmaTrainer, check_data

    output_dir = Path(config.output_dir)
    checkpoint = config.resume_from_checkpoint or last_checkpoint(output_dir, resume)
    _ = config.device  # sets up the process group and this process's GPU before 4-bit weights are placed
    check_processes(config)

    # The first process converts the embedded model and fills the datasets cache; the others then read them.
    with config.main_process_first(desc="model files and data"):
        data = prepare_data(config, load_tokenizer(config.model_settings()))
    check_data(config, data.train, data.eval)  # before the minutes a large model takes to load
    # The fresh LoRA weights are drawn when the model is built, before the Trainer seeds anything: seed here, so a
    # run (and each of its processes) starts from the adapter its seed says.
    set_seed(config.seed)
    model, tokenizer = load_model(
        config.model_settings(),
        lora=config.lora_settings(),
        for_training=True,
        attn_implementation=config.attn_implementation,
        fp32_frozen_weights=config.fp32_frozen_weights,
    )

    trainer = UlmaTrainer(
        model,
        config,
        data.train,
        data.eval,
        processing_class=tokenizer,
        callbacks=[JsonlMetricsCallback(output_dir), ConfigInCheckpointCallback()],
    )
    if trainer.is_world_process_zero():
        config.save_yaml(output_dir / CONFIG_FILE)
        (output_dir / DATA_FILE).write_text(json.dumps(data.summary(), indent=2), encoding="utf-8")
    trainer.train(resume_from_checkpoint=checkpoint)
    final_metrics = final_evaluation(trainer) if data.eval is not None else {}
    if trainer.is_fsdp_enabled:  # the adapter as one file, not one shard per process
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model(str(output_dir))
    if trainer.is_world_process_zero():
        plot_training_curves(read_metrics(output_dir / METRICS_FILE), output_dir / CURVES_FILE)
        write_model_card(output_dir, config, data.summary(), final_metrics, trainer.state.global_step)
    return trainer


def main(argv: list[str] | None = None) -> int:
    argv, debug = split_debug_flag(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if debug:
        logging.getLogger("finetune").setLevel(logging.DEBUG)
    # bitsandbytes announces at import that an optional hub-downloaded CPU kernel is absent; it is not needed.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    return run_cli(lambda: run(argv), debug=debug)


def run(argv: list[str]) -> int:
    config, cli = parse_args(argv)
    try:
        train(config, resume=cli.resume)
    except KeyboardInterrupt:
        print("interrupted; continue with --resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"adapter, model card and metrics in {config.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
