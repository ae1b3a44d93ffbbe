"""The throughput benchmark end to end on CPU, at toy size: both paths train and the result file has its fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.train_throughput import main

pytestmark = pytest.mark.slow


def test_tiny_benchmark_writes_the_documented_fields(tmp_path: Path, shared_data: Path) -> None:
    out = tmp_path / "train_throughput.json"
    main([
        "--shape", "tiny", "--device", "cpu", "--model-dir", str(tmp_path / "model"),
        "--data", str(shared_data / "hh-rlhf" / "harmless-base-test.jsonl.gz"),
        "--rows", "16", "--max-length", "256", "--baseline-batch", "4", "--warmup", "1", "--steps", "1",
        "--variants", "1024:on", "1024:off:grouped", "--out", str(out),
    ])
    result = json.loads(out.read_text())
    assert result["device"] == "cpu"
    for run in ("baseline", "project"):
        assert result[run]["effective_tokens_per_s"] > 0
        assert "peak_gb" in result[run]
    assert result["ratio"] == pytest.approx(
        result["project"]["effective_tokens_per_s"] / result["baseline"]["effective_tokens_per_s"], rel=1e-2
    )
    assert len(result["project_variants"]) == 2
