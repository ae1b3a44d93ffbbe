"""The throughput benchmark end to end on CPU, at toy size: every configuration runs in its own process, the
headline pair runs twice in alternated order, and the result file has its documented fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.throughput_runs import Variant
from benchmarks.train_throughput import main


def test_variants_parse_name_and_tell_ablations_apart() -> None:
    texts = ["16384:on:liger", "8192:off:packed", "16384:on:maskpad", "16384:on:stepref"]
    variants = [Variant.parse(text) for text in texts]
    assert [v.name for v in variants] == [
        "project 16384 tok/batch, ckpt on, liger",
        "project 8192 tok/batch, ckpt off, packed",
        "project 16384 tok/batch, ckpt on, maskpad",
        "project 16384 tok/batch, ckpt on, stepref",
    ]
    assert [v.is_ablation for v in variants] == [False, False, True, True]
    for bad in ("16384", "big:on", "16384:maybe", "16384:on:turbo"):
        with pytest.raises(ValueError):
            Variant.parse(bad)


@pytest.mark.slow
def test_tiny_benchmark_writes_the_documented_fields(tmp_path: Path, shared_data: Path) -> None:
    out = tmp_path / "train_throughput.json"
    main(
        [
            "--shape", "tiny",
            "--device", "cpu",
            "--model-dir", str(tmp_path / "model"),
            "--data", str(shared_data / "hh-rlhf" / "harmless-base-test.jsonl.gz"),
            "--rows", "16",
            "--max-length", "256",
            "--baseline-sizes", "2", "4",
            "--naive-batch", "4",
            "--warmup", "1",
            "--steps", "1",
            "--variants", "1024:on", "512:off:maskpad",
            "--out", str(out),
        ]
    )  # fmt: skip
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and result["command"].startswith("python -m benchmarks.train_throughput")
    assert {"torch", "transformers", "peft"} <= result["versions"].keys() and result["date"]
    assert result["baseline_search"]["batch_rows"] == 4  # no memory cap on CPU: the largest size
    for run in ("baseline", "naive_baseline", "project"):
        assert result[run]["effective_tokens_per_s"] > 0
        assert "peak_gb" in result[run]
    # The fair baseline and the reported project ran twice, in alternated order; the rest once.
    assert result["baseline"]["repeats"] == 2 and result["project"]["repeats"] == 2
    assert result["run_order"][-2:] == [result["project_name"], "fair baseline"]
    assert result["run_order"][0] == "fair baseline"
    assert result["naive_baseline"]["repeats"] == 1
    assert result["ratio"] == pytest.approx(
        result["project"]["effective_tokens_per_s"] / result["baseline"]["effective_tokens_per_s"], rel=1e-2
    )
    # The padding-mask ablation is measured but never reported as the project's run.
    assert result["project_name"] == "project 1024 tok/batch, ckpt on"
    ablation = result["project_variants"]["project 512 tok/batch, ckpt off, maskpad"]
    assert not ablation["flags"]["causal_mask_only"] and ablation["repeats"] == 1
    # Tokens are those of the timed step only: one micro-batch of at most 1024 tokens.
    assert 0 < result["project"]["effective_tokens"] <= 1024
    assert result["project"]["steps_only_tokens_per_s"] >= result["project"]["effective_tokens_per_s"]
    assert result["same_batch_loss"]["relative_difference"] < 1e-4  # CPU: float32 on both paths
