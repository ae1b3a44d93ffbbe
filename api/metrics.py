"""Prometheus metrics of one service instance, in a registry of its own (one per app, so tests can build many)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from agents.chat import TurnResult
from agents.generation import GenerationStats

# Seconds; a turn on CPU takes from tens of milliseconds (a refusal) to a minute (a long answer).
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
# A graph step: a guard verdict or a search takes milliseconds, a generation up to the whole turn.
NODE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class _GeneratorCollector(Collector):
    """Reads the generator's running totals at scrape time (None until the agent has loaded)."""

    def __init__(self, stats: Callable[[], GenerationStats | None]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        tokens = CounterMetricFamily("rag_generated_tokens", "tokens the generator produced")
        busy = CounterMetricFamily("rag_generator_busy_seconds", "seconds the generator spent generating")
        tokens.add_metric([], stats.tokens if stats else 0)
        busy.add_metric([], stats.busy_seconds if stats else 0.0)
        yield tokens
        yield busy


class ServiceMetrics:
    def __init__(self, generation_stats: Callable[[], GenerationStats | None]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("rag_http_requests", "HTTP requests by route template, method and status",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("rag_http_request_seconds", "time to the response's first byte, by route",
                                 ["route", "method"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.turn_latency = Histogram("rag_turn_seconds", "whole turns (streams included), by outcome",
                                      ["outcome"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.node_latency = Histogram("rag_node_seconds", "time in each step of the agent graph, by node",
                                      ["node"], buckets=NODE_BUCKETS, registry=self.registry)
        self.refusals = Counter("rag_refusals", "refused turns by hazard category and stage (request/response)",
                                ["category", "stage"], registry=self.registry)
        self.queue_depth = Gauge("rag_turn_queue_depth", "turns admitted: running or waiting for the generator",
                                 registry=self.registry)
        self.queue_capacity = Gauge("rag_turn_queue_capacity", "api.max_queued_turns", registry=self.registry)
        self.rejected = Counter("rag_turns_rejected", "turns refused admission, by reason",
                                ["reason"], registry=self.registry)
        self.registry.register(_GeneratorCollector(generation_stats))
        # process_resident_memory_bytes, CPU seconds, open files: memory that grows under steady load shows here.
        ProcessCollector(registry=self.registry)

    def observe_turn(self, turn: TurnResult, seconds: float) -> None:
        self.turn_latency.labels("refused" if turn.refused else "answered").observe(seconds)
        for node, node_seconds in turn.node_seconds.items():
            self.node_latency.labels(node).observe(node_seconds)
        for stage, verdict in (("request", turn.request_verdict), ("response", turn.response_verdict)):
            if verdict is not None and not verdict.safe:
                for category in verdict.categories or ["unspecified"]:
                    self.refusals.labels(category, stage).inc()
