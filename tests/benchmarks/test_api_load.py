"""The load test, small: 8 clients against a real `python -m api` (packaged models) with 4 queue places, so
some requests must get the deliberate 503; nothing else may fail, and turns must get answered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from benchmarks.api_load import main

pytestmark = pytest.mark.slow

# Short answers from short prompts keep a turn to a few seconds on a loaded 2-core CPU; the default
# generation time limit (120 s) still bounds every turn, and the drain below outlasts it. Answers are generated
# (not the embedded default's quoted evidence, which needs no model time): the queue must fill.
PROFILE = {"model": {"max_new_tokens": 8}, "retrieval": {"top_k": 1},
           "agent": {"agentic": {"excerpt_sentences": 1, "answer_with": "generator"}}, "api": {"max_queued_turns": 4}}


def test_load_gets_answers_or_a_503_with_retry_after_and_nothing_else(tmp_path: Path) -> None:
    config, out = tmp_path / "profile.yaml", tmp_path / "api_load.json"
    config.write_text(yaml.safe_dump(PROFILE))
    code = main(["--config", str(config), "--clients", "8", "--duration", "20", "--drain", "150",
                 "--out", str(out)])
    result = json.loads(out.read_text())

    assert code == 0, result
    assert result["unexpected_statuses"] == {} and result["busy_without_retry_after"] == 0
    assert result["failed_turns"] == {} and result["turns"].get("cancelled", 0) == 0
    assert result["turns"]["answered"] >= 1 and result["http_statuses"]["200"] >= 1
    assert result["http_statuses"].get("503", 0) >= 1  # 8 clients, 4 places: the queue turned some away
    assert result["max_queue_depth"] >= 1 and result["generated_tokens"] > 0
    assert 0 < result["latency_s"]["p50"] <= result["latency_s"]["p99"]
    assert result["rss_mb"]["peak"] >= result["rss_mb"]["after_warm_up"] > 100
    assert {"command", "device", "versions", "date", "method"} <= set(result)
