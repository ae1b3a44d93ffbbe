"""The engine-settings sweep at toy size on CPU: each setting's figures come from tokens it really generated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.engine_settings import main


@pytest.mark.slow
def test_a_toy_sweep_counts_every_generated_token(tmp_path: Path) -> None:
    out = tmp_path / "engine_settings.json"
    code = main(["--device", "cpu", "--shape", "tiny", "--settings", "no_graphs", "static_generate",
                 "--prompt-tokens", "16", "--new-tokens", "4", "--concurrency", "3", "--single-runs", "1",
                 "--out", str(out)])

    assert code == 0
    report = json.loads(out.read_text())
    assert report["command"].startswith("python -m benchmarks.engine_settings")
    engine, static = report["results"]["no_graphs"], report["results"]["static_generate"]
    assert engine["settings"] == {"use_cuda_graph": False}
    assert engine["aggregate_at_3"]["tokens"] == 3 * 4  # no end token: every request runs to its length
    assert engine["single"]["tokens_per_s"] > 0 and engine["single"]["ttft_ms_p50"] > 0
    assert static["single"]["tokens_per_s"] > 0 and static["aggregate_at_3"]["requests"] == 3
