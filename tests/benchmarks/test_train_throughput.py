"""The throughput benchmark end to end on CPU, at toy size: both paths train and the result file has its fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.train_throughput import Variant, main, run_order


def test_variants_parse_and_run_fp32_first_and_liger_last() -> None:
    texts = ["16384:on:liger", "8192:off:packed", "16384:on:fp32", "16384:on:stepref"]
    variants = run_order([Variant.parse(text) for text in texts])
    assert [v.name for v in variants] == [
        "16384 tok/batch, ckpt on, fp32",
        "8192 tok/batch, ckpt off, packed",
        "16384 tok/batch, ckpt on, stepref",
        "16384 tok/batch, ckpt on, liger",
    ]
    assert [v.is_ablation for v in variants] == [True, False, True, False]
    for bad in ("16384", "big:on", "16384:maybe", "16384:on:turbo", "16384:on:fp32:liger"):
        with pytest.raises(SystemExit):
            Variant.parse(bad)


@pytest.mark.slow
def test_tiny_benchmark_writes_the_documented_fields(tmp_path: Path, shared_data: Path) -> None:
    out = tmp_path / "train_throughput.json"
    main(
        [
            "--shape",
            "tiny",
            "--device",
            "cpu",
            "--model-dir",
            str(tmp_path / "model"),
            "--data",
            str(shared_data / "hh-rlhf" / "harmless-base-test.jsonl.gz"),
            "--rows",
            "16",
            "--max-length",
            "256",
            "--baseline-batch",
            "4",
            "--warmup",
            "1",
            "--steps",
            "1",
            "--variants",
            "1024:on",
            "1024:off:grouped",
            "1024:on:fp32",
            "--out",
            str(out),
        ]
    )
    result = json.loads(out.read_text())
    assert result["device"] == "cpu"
    for run in ("baseline", "project"):
        assert result[run]["effective_tokens_per_s"] > 0
        assert "peak_gb" in result[run]
    assert result["ratio"] == pytest.approx(
        result["project"]["effective_tokens_per_s"] / result["baseline"]["effective_tokens_per_s"], rel=1e-2
    )
    assert len(result["project_variants"]) == 3
    # The fp32 ablation is measured but never reported as the project's run.
    assert not result["project"]["flags"]["fp32_frozen_weights"]
    loss = result["same_batch_loss"]
    assert loss["relative_difference"] < 1e-4  # CPU: float32 on both paths
