"""What /metrics reports (the Observability list of issue 15), in process; test_server.py scrapes a real server."""

from __future__ import annotations

import re
from contextlib import AsyncExitStack

from fastapi.testclient import TestClient
from prometheus_client import generate_latest

from agents.chat import TurnResult
from agents.generator import GenerationStats
from agents.safety.verdict import Verdict
from api.app import create_app
from api.metrics import ServiceMetrics
from configs.settings import AppSettings


def verdict(stage: str, *categories: str) -> Verdict:
    return Verdict(safe=not categories, categories=list(categories), backend="test", stage=stage)


def turn(request: Verdict, response: Verdict | None, **node_seconds: float) -> TurnResult:
    return TurnResult(thread_id=None, message_id="m", answer="a", documents=[], request_verdict=request,
                      response_verdict=response, route=list(node_seconds), node_seconds=node_seconds)


def sample(text: str, name: str, **labels: str) -> float:
    selector = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    found = re.search(rf"^{name}{{{selector}}} (\S+)$" if labels else rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found, f"{name} {labels} not in the metrics"
    return float(found.group(1))


def test_refusals_are_counted_by_category_and_stage_and_turns_by_outcome():
    stats = GenerationStats()
    stats.record(tokens=12, seconds=0.5)
    metrics = ServiceMetrics(lambda: stats)
    metrics.observe_turn(turn(verdict("request", "S9"), None), 0.02)
    metrics.observe_turn(turn(verdict("request"), verdict("response", "S10", "S12")), 3.0)
    metrics.observe_turn(turn(verdict("request"), verdict("response"), safety_in=0.004, generate=1.9), 2.0)
    text = generate_latest(metrics.registry).decode()

    assert sample(text, "rag_refusals_total", category="S9", stage="request") == 1
    assert sample(text, "rag_refusals_total", category="S10", stage="response") == 1
    assert sample(text, "rag_refusals_total", category="S12", stage="response") == 1
    assert sample(text, "rag_turn_seconds_count", outcome="refused") == 2
    assert sample(text, "rag_turn_seconds_count", outcome="answered") == 1
    assert sample(text, "rag_generated_tokens_total") == 12 and sample(text, "rag_generator_busy_seconds_total") == 0.5
    assert sample(text, "rag_node_seconds_sum", node="safety_in") == 0.004
    assert sample(text, "rag_node_seconds_bucket", le="0.005", node="safety_in") == 1
    assert sample(text, "rag_node_seconds_count", node="generate") == 1


def test_the_scrape_has_requests_latency_queue_and_process_memory():
    class IdleAgent:
        generation_stats = GenerationStats()

    async def starter(settings: AppSettings, stack: AsyncExitStack):
        return IdleAgent()

    with TestClient(create_app(AppSettings(api={"dev_mode": True}), starter=starter),
                    client=("127.0.0.1", 50000)) as client:
        client.get("/v1/models")
        text = client.get("/metrics").text
    assert sample(text, "rag_http_requests_total", method="GET", route="/v1/models", status="200") == 1
    assert sample(text, "rag_http_request_seconds_count", method="GET", route="/v1/models") == 1
    assert sample(text, "rag_turn_queue_depth") == 0 and sample(text, "rag_turn_queue_capacity") == 8
    assert sample(text, "process_resident_memory_bytes") > 10e6

