"""Data-parallel ULMA on CPU: two processes (torchrun, gloo) train the same 4-bit QLoRA steps of the embedded model
as one process with twice the gradient accumulation, and only one of them writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
EMBEDDED_PROFILE = REPO_ROOT / "configs" / "finetune" / "ulma-embedded.yaml"


def _logged_steps(output_dir: Path) -> list[dict]:
    lines = (output_dir / "metrics.jsonl").read_text().splitlines()
    return [entry for entry in map(json.loads, lines) if "loss" in entry]


def _adapter(output_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(output_dir / "adapter_model.safetensors")


def test_two_processes_train_as_one_with_twice_the_accumulation(tmp_path, short_pairs_file):
    from finetune.__main__ import parse_args, train

    # 8 rows in 4 token-budget micro-batches: 2 steps of 2 processes x 1 micro-batch, or of 1 process x 2.
    common = [
        "--config", str(EMBEDDED_PROFILE),
        "--dataset", str(short_pairs_file),
        "--max_train_pairs", "4",
        "--val_fraction", "0",
        "--eval_strategy", "no",
        "--max_length", "128",
        "--max_tokens_per_batch", "160",
        "--max_steps", "2",
        "--save_steps", "2",
        # SGD, not AdamW: Adam's first updates are about lr * sign(gradient), so entries at rounding-noise level
        # (LoRA A's gradients while B is still near zero) differ by a whole lr when the two layouts sum in
        # another order (seen on a CPU with AMX); SGD's update is linear in the gradient.
        "--optim", "sgd",
        "--learning_rate", "0.1",
        "--warmup_steps", "0",
        "--disable_tqdm", "true",
    ]  # fmt: skip
    two, one = tmp_path / "two", tmp_path / "one"
    launched = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "finetune", *common,
         "--output-dir", str(two), "--gradient_accumulation_steps", "1", "--use_cpu", "true"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert launched.returncode == 0, launched.stderr[-3000:]
    config, _ = parse_args([*common, "--output-dir", str(one), "--gradient_accumulation_steps", "2"])
    assert config.load_in_4bit == "always"
    train(config)

    two_steps, one_steps = _logged_steps(two), _logged_steps(one)
    assert [entry["step"] for entry in two_steps] == [1, 2]  # one writer: each step logged once
    for parallel, single in zip(two_steps, one_steps, strict=True):
        for key in ("loss", "grad_norm", "logps/positive", "logps/negative", "rewards/negative"):
            assert parallel[key] == pytest.approx(single[key], rel=1e-3, abs=1e-6), key
    two_adapter, one_adapter = _adapter(two), _adapter(one)
    assert two_adapter.keys() == one_adapter.keys()
    for name, weight in one_adapter.items():
        torch.testing.assert_close(two_adapter[name], weight, rtol=1e-3, atol=1e-5, msg=name)
    assert any(("lora_B" in name) and weight.abs().sum() > 0 for name, weight in one_adapter.items())

    checkpoint = two / "checkpoint-2"
    assert {p.name for p in checkpoint.glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}
    assert len(list((two / "ref_logps").glob("*.npy"))) == 1  # computed by both, written by one
