"""The production-recipe run end to end on CPU at toy size: training interrupted after a checkpoint, resumed,
the adapter saved and answered with through the service's loader, and the result file's fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.production_recipe import main
from configs.settings import ModelSettings
from finetune.modeling import ensure_embedded_model


@pytest.mark.slow
def test_interrupted_run_resumes_and_its_adapter_is_served(tmp_path: Path, hh_file: Path) -> None:
    results = tmp_path / "production_recipe.json"
    tokenizer = ensure_embedded_model(ModelSettings().cache_dir)
    code = main(
        [
            "--tokenizer", str(tokenizer), "--shape", "tiny", "--device", "cpu",
            "--model-dir", str(tmp_path / "model"), "--out", str(tmp_path / "out"), "--results", str(results),
            "--data", str(hh_file), "--pairs", "64", "--steps", "6", "--interrupt-at", "2",
            "--", "--use_liger_kernel", "false", "--bf16", "false", "--use_cpu", "true",
            "--max_tokens_per_batch", "2048", "--gradient_checkpointing", "false", "--dataloader_num_workers", "0",
        ]
    )  # fmt: skip
    assert code == 0
    report = json.loads(results.read_text(encoding="utf-8"))
    assert report["first_run"]["exit_code"] == 130  # interrupted, as Ctrl-C or a preemption would
    assert 2 <= report["resumed_from_step"] < 6 and report["steps"] == 6
    assert report["seconds_per_step"] > 0 and report["served"]["answer_chars"] > 0
    assert report["steps_timed"] == 6 - report["resumed_from_step"]
    epoch = report["hh_golden_epoch"]
    assert epoch["steps"] > epoch["steps_per_epoch_measured"] > 0 and epoch["hours"] > 0
    assert {"command", "device", "versions", "profile", "peak_gpu_gb"} <= report.keys()
    metrics = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    logged_steps = [entry["step"] for entry in metrics if "loss" in entry]
    assert logged_steps == sorted(set(logged_steps))  # one uninterrupted record: nothing logged twice


def test_interrupt_step_must_lie_inside_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--tokenizer", str(tmp_path), "--steps", "4", "--interrupt-at", "4", "--out", str(tmp_path / "o")])
    assert code == 2
    assert "--interrupt-at must lie between 0 and --steps" in capsys.readouterr().err
