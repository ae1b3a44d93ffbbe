"""The production recipe end to end on a Llama-3.1-8B-shaped model: 4-bit load, training, a checkpoint, an
interruption, `--resume`, the adapter saved, then loaded by the service's own loader and used to generate.

    python -m benchmarks.production_recipe --tokenizer TOKENIZER_DIR            # H200: 8B shape, 50 steps
    python -m benchmarks.production_recipe --tokenizer DIR --shape tiny --device cpu --steps 4 \\
        --interrupt-at 2 -- --use_liger_kernel false --bf16 false --use_cpu true  # smoke test

The model has random weights (no hub access is needed and speed does not depend on the values); the data are
real HH pairs. `python -m finetune --config configs/finetune/ulma-llama31-8b.yaml` runs as a user runs it,
with the flags after `--` added. The first run is interrupted with SIGINT (as Ctrl-C or a preemption would)
once its checkpoint at `--interrupt-at` is on disk; the second continues it with `--resume`. Time per step is the
resumed run's own `train_runtime` over the steps it ran (model loading and the reference pass excluded); peak
memory is the largest GPU memory nvidia-smi showed for each training process. Writes
benchmarks/results/production_recipe.json and prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

from configs.cli import run_cli
from configs.errors import AppError
from configs.settings import PROJECT_ROOT, SHARED_DATA_DIR

logger = logging.getLogger("benchmarks.production_recipe")

RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "production_recipe.json"
PROFILE = PROJECT_ROOT / "configs" / "finetune" / "ulma-llama31-8b.yaml"
DEFAULT_DATA = SHARED_DATA_DIR / "hh-rlhf" / "harmless-base-test.jsonl.gz"
PROMPT = "Give me three tips for writing a clear incident postmortem."
HH_GOLDEN_PAIRS = 42_500  # Anthropic_HH_Golden's train split, about 85k point-wise rows


class RecipeError(AppError, RuntimeError):
    """A stage of the recipe failed; the message names it and its log."""


class GpuMemoryWatch:
    """The largest memory nvidia-smi reports for one process, sampled every half second (None off the GPU)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak_mib = pid, None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        query = ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"]
        while not self._stop.wait(0.5):
            try:
                lines = subprocess.run(query, capture_output=True, text=True, check=True).stdout.splitlines()
            except (OSError, subprocess.CalledProcessError):
                return
            for line in lines:
                pid, _, used = line.partition(",")
                if pid.strip() == str(self.pid) and used.strip().isdigit():
                    self.peak_mib = max(self.peak_mib or 0, int(used))

    @property
    def peak_gb(self) -> float | None:
        return None if self.peak_mib is None else round(self.peak_mib / 1024, 2)


def finetune_command(args: argparse.Namespace, model_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "finetune",
        "--config",
        str(PROFILE),
        "--model_name_or_path",
        str(model_dir),
        "--dataset",
        str(args.data),
        "--output_dir",
        str(args.out),
        "--max_steps",
        str(args.steps),
        "--save_steps",
        str(args.interrupt_at),
        "--logging_steps",
        "5",
        "--eval_strategy",
        "no",
        "--max_train_pairs",
        str(args.pairs),
        "--max_eval_pairs",
        "32",
        *args.finetune_flags,
        *extra,
    ]


def checkpoint_ready(out: Path, step: int) -> bool:
    """The Trainer writes trainer_state.json last, then `finetune`'s callback the config: all is on disk."""
    folder = out / f"checkpoint-{step}"
    return (folder / "trainer_state.json").is_file() and (folder / "ulma_config.yaml").is_file()


def run_stage(command: list[str], log: Path, interrupt_at: int | None = None) -> dict[str, Any]:
    """Run one training process; with `interrupt_at`, send it SIGINT once that checkpoint is complete."""
    out = Path(command[command.index("--output_dir") + 1])
    started = time.perf_counter()
    with log.open("w", encoding="utf-8") as handle:
        with _sigint_not_ignored():
            process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT)
        with GpuMemoryWatch(process.pid) as watch:
            interrupted = False
            while process.poll() is None:
                if interrupt_at is not None and not interrupted and checkpoint_ready(out, interrupt_at):
                    process.send_signal(signal.SIGINT)
                    interrupted = True
                time.sleep(0.1)
    expected = 130 if interrupt_at is not None else 0
    if process.returncode != expected:
        lines = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        raise RecipeError(
            f"{log.stem}: exit {process.returncode}, expected {expected} "
            f"({lines[-1] if lines else 'no output'}; see {log})"
        )
    return {
        "exit_code": process.returncode,
        "wall_s": round(time.perf_counter() - started, 1),
        "peak_gpu_gb": watch.peak_gb,
    }


@contextlib.contextmanager
def _sigint_not_ignored() -> Iterator[None]:
    """A process started in the background (nohup, `&`) ignores SIGINT, and a child inherits an ignored signal,
    so Python in the child would never raise KeyboardInterrupt. A handled signal is reset to the default in the
    child instead: handle it here while the child starts."""
    if signal.getsignal(signal.SIGINT) != signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def last_checkpoint_step(out: Path) -> int:
    """The step `--resume` continues from: the newest complete checkpoint."""
    from transformers.trainer_utils import get_last_checkpoint

    checkpoint = get_last_checkpoint(str(out))
    if checkpoint is None:
        raise RecipeError(f"the interrupted run left no checkpoint in {out}")
    return int(checkpoint.rsplit("-", 1)[-1])


def train_summary(out: Path) -> dict[str, Any]:
    from finetune.callbacks import METRICS_FILE, read_metrics

    entries = read_metrics(out / METRICS_FILE)
    summary = next((entry for entry in reversed(entries) if "train_runtime" in entry), None)
    losses = [entry["loss"] for entry in entries if "loss" in entry]
    if summary is None or not losses:
        raise RecipeError(f"{out / METRICS_FILE} has no training summary or losses")
    return {
        "train_runtime_s": summary["train_runtime"],
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "steps": summary["step"],
        "epochs": summary["epoch"],
    }


def epoch_estimate(summary: dict[str, Any], pairs: int, seconds_per_step: float) -> dict[str, Any]:
    """One epoch of HH Golden at the measured time per step: the steps an epoch of this run's `pairs` took
    (from the Trainer's epoch counter), scaled by the number of pairs, so the rows are assumed to have this
    data's lengths. The one-off reference pass before training is not included."""
    steps_per_epoch = summary["steps"] / summary["epochs"]
    steps = steps_per_epoch * HH_GOLDEN_PAIRS / pairs
    return {
        "pairs": HH_GOLDEN_PAIRS,
        "steps_per_epoch_measured": round(steps_per_epoch, 1),
        "steps": round(steps),
        "hours": round(steps * seconds_per_step / 3600, 2),
    }


def serve_and_generate(args: argparse.Namespace, model_dir: Path) -> dict[str, Any]:
    """The adapter loaded and answered with as the service's sequential engine does (what
    agents.parts.load_generator builds, without importing the retrieval stack), asked one question."""
    import torch

    from agents.generator import SequentialGenerator
    from configs.settings import ModelSettings
    from finetune.modeling import load_model

    settings = ModelSettings(
        name_or_path=str(model_dir),
        adapter_path=str(args.out),
        device=args.device,
        max_new_tokens=32,
        engine={"kind": "sequential"},
    )
    if torch.cuda.is_available():  # this process may have built the random model on the GPU
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    generator = SequentialGenerator(*load_model(settings), settings)
    loaded_s = time.perf_counter() - started
    try:
        started = time.perf_counter()
        answer = generator.generate([{"role": "user", "content": PROMPT}])
        generate_s = time.perf_counter() - started
    finally:
        generator.close()
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    return {
        "load_s": round(loaded_s, 1),
        "generate_s": round(generate_s, 2),
        "answer_chars": len(answer),
        "answer_head": answer[:120],
        "peak_gpu_gb": None if peak is None else round(peak, 2),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.llama_shape import save_random_model
    from configs.settings import ModelSettings
    from finetune.modeling import load_tokenizer

    if not 0 < args.interrupt_at < args.steps:
        raise RecipeError("--interrupt-at must lie between 0 and --steps")
    if args.out.exists():
        raise RecipeError(f"{args.out} exists; choose another --out")
    args.out.mkdir(parents=True)
    tokenizer = load_tokenizer(ModelSettings(name_or_path=str(args.tokenizer)))
    started = time.perf_counter()
    model_dir = save_random_model(args.shape, args.model_dir, args.device, tokenizer)
    create_s = time.perf_counter() - started
    logs = args.out.parent / f"{args.out.name}-logs"
    logs.mkdir(exist_ok=True)
    first = run_stage(finetune_command(args, model_dir), logs / "train.log", interrupt_at=args.interrupt_at)
    continued_at = last_checkpoint_step(args.out)
    second = run_stage(finetune_command(args, model_dir, "--resume"), logs / "resume.log")
    summary = train_summary(args.out)
    steps_resumed = summary["steps"] - continued_at
    if not (args.out / "adapter_model.safetensors").is_file():
        raise RecipeError(f"no adapter saved in {args.out}")
    served = serve_and_generate(args, model_dir)
    seconds_per_step = round(summary["train_runtime_s"] / steps_resumed, 3)
    return {
        "shape": args.shape,
        "steps": summary["steps"],
        "interrupted_after_checkpoint": args.interrupt_at,
        "resumed_from_step": continued_at,
        "steps_timed": steps_resumed,
        "seconds_per_step": seconds_per_step,
        "hh_golden_epoch": epoch_estimate(summary, args.pairs, seconds_per_step),
        "peak_gpu_gb": max(filter(None, (first["peak_gpu_gb"], second["peak_gpu_gb"])), default=None),
        "first_loss": summary["first_loss"],
        "last_loss": summary["last_loss"],
        "create_model_s": round(create_s, 1),
        "first_run": first,
        "resumed_run": second,
        "served": served,
        "adapter_mb": round((args.out / "adapter_model.safetensors").stat().st_size / 2**20, 1),
    }


def versions() -> dict[str, str]:
    import bitsandbytes
    import peft
    import torch
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "none",
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "bitsandbytes": bitsandbytes.__version__,
    }


def device_name(device: str) -> str:
    import torch

    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return f"CPU {platform.machine()}, {os.cpu_count()} cores"


def print_table(result: dict[str, Any]) -> None:
    rows = [
        ("steps (resumed from)", f"{result['steps']} ({result['resumed_from_step']})"),
        ("seconds per step", f"{result['seconds_per_step']} (over {result['steps_timed']} steps)"),
        ("HH Golden epoch (hours)", result["hh_golden_epoch"]["hours"]),
        ("peak GPU GB (training)", result["peak_gpu_gb"]),
        ("loss first -> last", f"{result['first_loss']:.4f} -> {result['last_loss']:.4f}"),
        ("served: load s / generate s", f"{result['served']['load_s']} / {result['served']['generate_s']}"),
        ("adapter MB", result["adapter_mb"]),
    ]
    for name, value in rows:
        print(f"{name:<30}{value}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.production_recipe",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--tokenizer", type=Path, required=True, help="a chat tokenizer folder for the model")
    parser.add_argument("--shape", choices=["llama31-8b", "tiny"], default="llama31-8b")
    parser.add_argument("--model-dir", type=Path, default=Path("/dev/shm/production-recipe-model"))
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="HH-format pairs (.jsonl/.jsonl.gz)")
    parser.add_argument("--pairs", type=int, default=1200, help="training pairs used (max_train_pairs)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument(
        "--interrupt-at", type=int, default=25, help="checkpoint step after which to interrupt"
    )
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "outputs" / "production-recipe")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--debug", action="store_true")
    parser.add_argument("finetune_flags", nargs="*", help="extra `python -m finetune` flags, after --")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )

    def measure() -> int:
        result = run(args)
        report = {
            "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "command": "python -m benchmarks.production_recipe "
            + " ".join(sys.argv[1:] if argv is None else argv),
            "device": device_name(args.device),
            "versions": versions(),
            "profile": str(PROFILE.relative_to(PROJECT_ROOT)),
            **result,
        }
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print_table(result)
        return 0

    return run_cli(measure, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
