"""The retrieval benchmark end to end at toy size (300-chunk stores, one run each): the JSON has its fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.retrieval import _rotating, main

pytestmark = pytest.mark.slow


def test_pipelines_take_turns_running_first() -> None:
    assert _rotating(4) == [
        ("ours", "baseline", "plain"),
        ("baseline", "plain", "ours"),
        ("plain", "ours", "baseline"),
        ("ours", "baseline", "plain"),
    ]


def test_tiny_benchmark_writes_the_documented_fields(tmp_path: Path, shared_data: Path) -> None:
    out = tmp_path / "retrieval.json"
    args = ["--ingest-chunks", "10", "--sizes", "300", "--repeats", "1", "--passes", "1", "--base-chunks", "40"]
    assert main([*args, "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]) == 0

    result = json.loads(out.read_text())
    assert result["same_ingest_chunks"] is True  # every pipeline stored exactly the same chunk ids
    for pipeline in ("ours", "baseline", "plain"):
        assert result[pipeline]["ingest_chunks_per_s"] > 0
        assert 0 < result[pipeline]["300"]["query_p50_ms"] <= result[pipeline]["300"]["query_p95_ms"]
        assert result["runs"][pipeline]["300"][0]["dense"]["queries"] == 40
    assert result["ours"]["300"]["hybrid_p95_ms"] > 0 and "hybrid_p95_ms" not in result["baseline"]["300"]
    assert {"ingest_ours_over_baseline", "ingest_ours_over_plain", "query_p95_ours_over_plain_300"} <= set(
        result["ratios"]
    )
    assert set(result["load_average_1min"]) == {"at_start", "min", "max", "cores"}
    assert 0.0 <= result["cpu_steal_share"]["min"] <= result["cpu_steal_share"]["max"] <= 1.0
    assert {"command", "device", "versions", "date", "method"} <= set(result)
