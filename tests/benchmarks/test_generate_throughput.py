"""The generation benchmark: its arithmetic, and one end-to-end run on CPU at toy size through the real service
(the continuous engine behind `python -m api`), with the documented fields in the result file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.engine_agreement import common_prefix
from benchmarks.generate_throughput import main, prompt_text, ratio
from configs.settings import DEFAULT_CACHE_DIR
from finetune.modeling import ensure_embedded_model, load_tokenizer


@pytest.fixture(scope="module")
def embedded_tokenizer_dir() -> Path:
    return ensure_embedded_model(DEFAULT_CACHE_DIR / "models")


def test_ratios_and_first_differences() -> None:
    assert ratio(300.0, 10.0) == 30.0
    assert ratio(None, 10.0) is None and ratio(5.0, None) is None
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix([1, 2], [1, 2, 3]) == 2
    assert common_prefix([9], [1]) == 0


def test_prompts_have_the_asked_length(embedded_tokenizer_dir: Path) -> None:
    from configs.settings import ModelSettings

    tokenizer = load_tokenizer(ModelSettings(name_or_path=str(embedded_tokenizer_dir)))
    for tokens in (64, 256):
        length = len(tokenizer(prompt_text(tokenizer, tokens), add_special_tokens=False)["input_ids"])
        assert tokens <= length < tokens + 40  # whole paragraphs: at most one too many


@pytest.mark.slow
def test_a_toy_run_through_the_service_writes_the_documented_fields(
    embedded_tokenizer_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "generate_throughput.json"
    code = main([
        "--tokenizer", str(embedded_tokenizer_dir), "--shape", "tiny", "--device", "cpu",
        "--model-dir", str(tmp_path / "model"), "--sides", "project", "--concurrency", "2",
        "--single-runs", "1", "--warmup", "0", "--new-tokens", "4", "--prompt-tokens", "32",
        "--window-s", "120", "--ready-timeout-s", "300", "--out", str(out),
    ])
    assert code == 0
    report = json.loads(out.read_text())
    project = report["project"]
    assert project["engine"] == "continuous"
    assert project["attention"] == "model default"  # off the GPU `auto` leaves the model's kernel
    assert "flash_attn_4" in report["versions"]
    assert project["single_stream_tokens_per_s"] > 0 and project["ttft_ms"] > 0
    assert project["aggregate_at_2"]["completed"] == 2 and not project["aggregate_at_2"]["errors"]
    assert {"command", "device", "versions", "baseline", "ratio_single", "ratio_aggregate"} <= set(report)
