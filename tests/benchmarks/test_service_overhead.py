"""The service-overhead benchmark end to end on CPU: the real service in front of the paced server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.service_overhead import main, median_node_ms


@pytest.mark.slow
def test_a_small_run_times_the_service_and_the_paced_server_alone(tmp_path: Path) -> None:
    out = tmp_path / "service_overhead.json"
    code = main(["--new-tokens", "6", "--prompt-tokens", "32", "--concurrency", "3", "--repeats", "2",
                 "--single-runs", "1", "--warmup", "1", "--interval-s", "0.001", "--out", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert {"command", "date", "device", "versions", "prompt_tokens"} <= set(report)
    for side in ("through_service", "paced_server_alone"):
        burst = report[side]["aggregate_at_3"]
        assert len(burst["bursts"]) == 2 and all(b["completed"] == 3 and not b["errors"] for b in burst["bursts"])
        assert burst["tokens_per_s_median"] > 0 and report[side]["single"]["tokens_per_s"] > 0
    # The service's process reports the CPU it spent (the benchmark's measure of what the service costs).
    assert report["through_service"]["aggregate_at_3"]["server_cpu_cores_median"] > 0
    # and where its turns spent their time; the paced server has no graph
    assert set(report["through_service"]["aggregate_at_3"]["node_ms_per_run_median"]) == {
        "safety_in", "retrieve", "generate", "safety_out"}
    assert report["paced_server_alone"]["aggregate_at_3"]["node_ms_per_run_median"] == {}


def test_graph_step_medians_skip_bursts_that_timed_nothing() -> None:
    bursts = [{"node_ms_per_run": {"retrieve": 1.0, "safety_out": 5.0}}, {"completed": 0},
              {"node_ms_per_run": {"retrieve": 3.0}}, {"node_ms_per_run": {"retrieve": 2.0, "safety_out": 1.0}}]
    assert median_node_ms(bursts) == {"retrieve": 2.0, "safety_out": 3.0}
