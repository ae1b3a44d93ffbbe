"""Generation speed through the service's own API: plain `generate` (the sequential engine) against continuous
batching in the service's process and against the service in front of a vLLM server, on a Llama-3.1-8B-shaped
model with random weights and a random LoRA adapter.

Each configuration is the real service (`python -m api --dev`) in its own process on 127.0.0.1 (the vLLM side
also starts `vllm.entrypoints.openai.api_server` in its own process and points `model.backend: openai` at it),
driven over HTTP with OpenAI-style streaming requests of about `--prompt-tokens` tokens and `--new-tokens` new
tokens:
- single stream: requests one after another (after warm-up); tokens/s over each request's whole time, and the
  time to its first streamed text;
- aggregate: `--concurrency` requests at once; tokens the server generated (its own /metrics counter, read as
  each request completes) over the time to the last completion inside `--window-s` (stretched to twice one
  single-stream request where that is longer), and the CPU cores the server processes kept busy meanwhile. A
  sequential engine completes only part of them inside the window: its rate is constant, so that part measures it.
  `--bursts N` sends N such bursts per level and reports the median one (with every burst's rate beside it): a
  burst of 32 lasts about a second on a GPU, and one alone is noisy.
`--service-replicas N [M ...]` starts N service processes and sends requests to them in turn, as the deployment's
nginx does to its replicas, then M in front of the same vLLM server (a side with the model in the service's own
process runs N only); `--service-embedding-device` places the service's guard and retriever encoders and
`--service-encoder-runtime` says what runs them (`torch`: eager kernels; the default on a GPU: CUDA graphs);
`--vllm-weights int8` serves vLLM the int8 export of the merged copy (`python -m finetune.export`'s weight-only
int8, `--int8-group-size` inputs per scale) instead of the bf16 one.
The vLLM side also records how many prompt tokens the model saw per request through the service (vLLM's own
counter: the service adds its system prompt and retrieved context) and the same measurements sent to vLLM
directly with the bare prompt (`model_server_alone`), which tells the engine's limit from the service's, and with a
prompt as long as the service's (`model_server_alone_at_service_prompt_length`), which tells what that length costs.
Both sides decode greedily without repetition penalty (continuous batching has none), the same prompts, the
same weights. Writes benchmarks/results/generate_throughput.json and prints a table.

    python -m benchmarks.generate_throughput --tokenizer PATH
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib.metadata
import json
import logging
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import httpx
import yaml

from benchmarks.servers import VLLM_MODEL_NAME, Server, env_pair, free_port, vllm_server_command
from configs.cli import run_cli
from configs.settings import PROJECT_ROOT, EncoderRuntime

logger = logging.getLogger("benchmarks.generate_throughput")

RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "generate_throughput.json"
SERVICE_TOKENS = re.compile(r"^rag_generated_tokens_total (\S+)$", re.MULTILINE)
# vLLM's counters (Prometheus, one sample per label set: summed)
VLLM_TOKENS = re.compile(r"^vllm:generation_tokens_total(?:\{[^}]*\})? (\S+)$", re.MULTILINE)
VLLM_PROMPT_TOKENS = re.compile(r"^vllm:prompt_tokens_total(?:\{[^}]*\})? (\S+)$", re.MULTILINE)
# CPU seconds of the server process (prometheus-client's process collector: the service and vLLM's API server)
PROCESS_CPU = re.compile(r"^process_cpu_seconds_total (\S+)$", re.MULTILINE)
NODE_SECONDS = re.compile(r'^rag_node_seconds_(sum|count)\{node="([^"]+)"\} (\S+)$', re.MULTILINE)
# A benign paragraph: repeated to the prompt length, then a question about it.
PARAGRAPH = (
    "The incident review covered the deployment pipeline, the staging checks, the on-call rotation and the "
    "dashboards that show latency and error rates for each region. "
)


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-style API under test: its replicas (requests spread over them in turn, as the deployment's load
    balancer does), the model name it answers to, and its generated-tokens counter (summed over the replicas)."""

    urls: tuple[str, ...]
    model: str
    tokens_metric: re.Pattern[str]

    def url(self, turn: int) -> str:
        return self.urls[turn % len(self.urls)]


@dataclass(frozen=True)
class Side:
    """One configuration of the service under test."""

    name: str
    engine: str  # model.engine.kind
    load_in_4bit: str  # model.quantization.load_in_4bit
    what: str
    attention: str = "auto"  # model.engine.attention
    backend: str = "local"  # model.backend: "openai" generates on a vLLM server the benchmark starts


SIDES = {
    "baseline": Side("baseline", "sequential", "always",
                     "plain transformers generate, one request at a time (the service before continuous "
                     "batching): NF4 base + unmerged LoRA, as it served on CUDA"),
    "project": Side("project", "continuous", "never",
                    "continuous batching (transformers ContinuousBatchingManager, paged KV cache, CUDA graphs at "
                    "the service's padding: queries to 16 tokens, keys to 512), LoRA merged into a bf16 base, "
                    "attention as the service picks it (FlashAttention 4 on Hopper where the gpu extra is installed)"),
    "project_sdpa": Side("project_sdpa", "continuous", "never",
                         "the project's default engine with its attention pinned to SDPA (as without the gpu extra)",
                         attention="sdpa"),
    "project_nf4": Side("project_nf4", "continuous", "always",
                        "continuous batching on the NF4 base with the LoRA adapter unmerged (small GPUs)"),
    "project_vllm": Side("project_vllm", "vllm", "never",
                         "the service on its OpenAI-compatible backend (model.backend: openai) in front of a vLLM "
                         "server in its own process: LoRA merged into a bf16 copy (or its int8 export: "
                         "`vllm_weights`), vLLM's defaults (paged attention, CUDA graphs, chunked prefill, prefix "
                         "caching)", backend="openai"),
}
VLLM_ATTENTION = re.compile(r"Using (\S+) attention backend")  # the line vLLM's engine logs at start


@dataclass
class Prompt:
    """The request text. With `distinct` each request gets a ticket number of its own in front, so that no cache
    answers for it: the guard's (by text) and the model server's prefix cache past the system prompt and context."""

    text: str
    distinct: bool = False
    sent: int = 0

    def next(self) -> str:
        self.sent += 1
        return f"Ticket {self.sent}: {self.text}" if self.distinct else self.text


def prompt_text(tokenizer: Any, tokens: int) -> str:
    """A benign request of about `tokens` tokens."""
    question = " Summarise the review in three sentences."
    text = PARAGRAPH
    while len(tokenizer(text + question, add_special_tokens=False)["input_ids"]) < tokens:
        text += PARAGRAPH
    return text + question


def model_config(side: Side, model_dir: Path | None, max_concurrent: int, new_tokens: int,
                 model_server_url: str | None) -> dict[str, Any]:
    """The service's `model` settings: the model in `model_dir` in its own process, or the vLLM server at
    `model_server_url`."""
    if side.backend == "openai":
        return {
            "backend": "openai",
            "openai": {"base_url": f"{model_server_url}/v1", "model": VLLM_MODEL_NAME, "read_timeout_s": 600,
                       "max_concurrent_requests": max_concurrent},
            "max_new_tokens": new_tokens,
        }
    if model_dir is None:
        raise ValueError(f"side {side.name} loads the model in the service: it needs the model's folder")
    return {
        "name_or_path": str(model_dir / "model"),
        "adapter_path": str(model_dir / "adapter"),
        "quantization": {"load_in_4bit": side.load_in_4bit},
        "max_new_tokens": new_tokens,
        "max_input_tokens": 4096,
        "repetition_penalty": 1.0,
        "engine": {"kind": side.engine, "max_concurrent": max_concurrent, "attention": side.attention},
    }


def service_config(side: Side, work: Path, port: int, *, max_concurrent: int, new_tokens: int,
                   embedding: dict[str, str], model_dir: Path | None = None, model_server_url: str | None = None,
                   replica: int = 0) -> Path:
    """A service replica's YAML profile under `work`; `embedding` is its `embedding` section (where and on what
    its guard and retriever encode)."""
    config = {
        "model": model_config(side, model_dir, max_concurrent, new_tokens, model_server_url),
        "embedding": embedding,
        "vector_store": {"persist_dir": str(work / f"chroma-{side.name}-{replica}")},
        # Linear: exactly one generation per turn (guard, retrieval, generation, output guard); raw tokens are
        # streamed, so the time to the first text is the model's, not the sentence gate's.
        "agent": {"checkpointer": "memory", "check_stream_sentences": False, "workflow": "linear"},
        "api": {"port": port, "rate_limit_per_minute": 0, "max_queued_turns": 4 * max_concurrent,
                "generation_timeout_s": 3600, "log_json": False},
    }
    path = work / f"{side.name}-{replica}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def counter(metrics_text: str, metric: re.Pattern[str]) -> float:
    return sum(float(value) for value in metric.findall(metrics_text))


async def scrape(client: httpx.AsyncClient, urls: tuple[str, ...]) -> list[str]:
    """The /metrics text of each server at `urls`."""
    return [(await client.get(f"{url}/metrics")).text for url in urls]


def total(scraped: list[str], metric: re.Pattern[str]) -> float:
    """`metric` summed over the servers' scraped texts."""
    return sum(counter(text, metric) for text in scraped)


async def read_counter(client: httpx.AsyncClient, urls: tuple[str, ...], metric: re.Pattern[str]) -> float:
    return total(await scrape(client, urls), metric)


def node_totals(scraped: list[str]) -> dict[tuple[str, str], float]:
    """The service's `rag_node_seconds` sums and counts, by (sum|count, node), added over the servers' texts."""
    totals: dict[tuple[str, str], float] = {}
    for text in scraped:
        for kind, node, value in NODE_SECONDS.findall(text):
            totals[kind, node] = totals.get((kind, node), 0.0) + float(value)
    return totals


def node_ms_per_run(before: dict[tuple[str, str], float], after: dict[tuple[str, str], float]) -> dict[str, float]:
    """Mean milliseconds per run of each graph node between two readings of `node_totals` (none for a server
    that is not the service)."""
    found = {}
    for node in {node for kind, node in after if kind == "count"}:
        runs = after["count", node] - before.get(("count", node), 0.0)
        if runs:
            found[node] = round(1000 * (after["sum", node] - before.get(("sum", node), 0.0)) / runs, 1)
    return found


async def generated_tokens(client: httpx.AsyncClient, endpoint: Endpoint) -> float:
    return await read_counter(client, endpoint.urls, endpoint.tokens_metric)


async def one_turn(client: httpx.AsyncClient, endpoint: Endpoint, prompt: Prompt, new_tokens: int,
                   turn: int = 0) -> dict[str, float]:
    """One streamed /v1/chat/completions request (to replica `turn` in turn): time to the first text and to the
    end. The service ignores the sampling fields (its configured decoding is the same); a model server needs them."""
    started = time.perf_counter()
    first = None
    body = {"model": endpoint.model, "stream": True, "max_tokens": new_tokens, "temperature": 0,
            "messages": [{"role": "user", "content": prompt.next()}]}
    async with client.stream("POST", f"{endpoint.url(turn)}/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {(await response.aread())[:300]!r}")
        async for line in response.aiter_lines():
            if first is None and line.startswith("data: {") and '"content":"' in line.replace(" ", "") \
                    and '"content":""' not in line.replace(" ", ""):
                first = time.perf_counter()
    ended = time.perf_counter()
    return {"ttft_s": (first or ended) - started, "total_s": ended - started, "ended": ended}


async def single_stream(client: httpx.AsyncClient, endpoint: Endpoint, prompt: Prompt, new_tokens: int,
                        runs: int) -> dict[str, Any]:
    rates, ttfts = [], []
    for run in range(runs):
        before = await generated_tokens(client, endpoint)
        turn = await one_turn(client, endpoint, prompt, new_tokens, run)
        tokens = await generated_tokens(client, endpoint) - before
        rates.append(tokens / turn["total_s"])
        ttfts.append(turn["ttft_s"] * 1000)
    return {"tokens_per_s": round(statistics.median(rates), 1), "ttft_ms_p50": round(statistics.median(ttfts), 1),
            "runs": runs, "tokens_per_s_each": [round(r, 1) for r in rates]}


async def aggregate(client: httpx.AsyncClient, endpoint: Endpoint, prompt: Prompt, new_tokens: int, concurrency: int,
                    window_s: float) -> dict[str, Any]:
    """`concurrency` requests at once; server-side tokens over the time to the last completion in the window, and
    the CPU the server processes spent meanwhile (in cores: 1.0 is one core busy throughout), and the mean time of
    each step of the service's graph (guard, retrieval, generation, output check) in the turns of the window."""
    scraped = await scrape(client, endpoint.urls)
    before, cpu_before = total(scraped, endpoint.tokens_metric), total(scraped, PROCESS_CPU)
    nodes_before = node_totals(scraped)
    started = time.perf_counter()
    completions: list[tuple[float, float]] = []  # (time, tokens generated so far)
    ttfts: list[float] = []

    async def client_turn(index: int) -> None:
        turn = await one_turn(client, endpoint, prompt, new_tokens, index)
        ttfts.append(turn["ttft_s"] * 1000)
        completions.append((turn["ended"], await generated_tokens(client, endpoint) - before))

    tasks = [asyncio.create_task(client_turn(index)) for index in range(concurrency)]
    done, pending = await asyncio.wait(tasks, timeout=window_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    errors = [str(task.exception()) for task in done if task.exception() is not None]
    scraped = await scrape(client, endpoint.urls)
    server_cpu_s = total(scraped, PROCESS_CPU) - cpu_before
    node_ms = node_ms_per_run(nodes_before, node_totals(scraped))
    if not completions:
        return {"completed": 0, "requests": concurrency, "errors": errors[:3], "tokens_per_s": None}
    last_time, tokens = max(completions)
    return {
        "tokens_per_s": round(tokens / (last_time - started), 1),
        "server_cpu_cores": round(server_cpu_s / (last_time - started), 2),
        "node_ms_per_run": node_ms,  # the service's graph steps: where a turn's time went
        "completed": len(completions),
        "requests": concurrency,
        "window_s": window_s,
        "ttft_ms_p50": round(statistics.median(ttfts), 1),
        "errors": errors[:3],
    }


def gpu_memory_used_gb() -> float | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return round(float(out.split()[0]) / 1024, 2)


def served_dir(args: argparse.Namespace) -> Path:
    """The merged copy vLLM serves: bf16, or its int8 export."""
    if args.vllm_weights == "bf16":
        return args.model_dir / "merged"
    return args.model_dir / f"merged-int8-g{args.int8_group_size or 'channel'}"


def vllm_command(args: argparse.Namespace, port: int) -> list[str]:
    """vLLM's server on the merged model, with room for every concurrent request."""
    return vllm_server_command(args.vllm_python, served_dir(args), port,
                               gpu_memory_utilization=args.vllm_gpu_memory_utilization,
                               max_num_seqs=max(64, max(args.concurrency)), extra=args.vllm_arg)


def entry_name(side: Side, replicas: int) -> str:
    """A measured configuration: the side, with its replica count when more than one service process."""
    return side.name if replicas == 1 else f"{side.name}_x{replicas}"


async def measure(side: Side, args: argparse.Namespace, work: Path, tokenizer: Any,
                  prompt: Prompt) -> dict[str, dict[str, Any]]:
    """The side measured through the service, keyed by `entry_name`. A side on a model server gets one service
    process per replica in each of `--service-replicas` in front of the same server, then the server alone; a
    side whose model lives in the service's process runs the first count only (each replica holds a copy of it)."""
    timeout = httpx.Timeout(args.window_s + 600, connect=10)
    limits = httpx.Limits(max_connections=4 * max(args.concurrency))
    model_server = None
    if side.backend == "openai":
        vllm_port = free_port()
        model_server = Server(vllm_command(args, vllm_port), vllm_port, work / f"{side.name}-vllm.log", "/health",
                              env=dict(args.vllm_env))
    found: dict[str, dict[str, Any]] = {}
    try:
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
            if model_server is not None:
                started = time.perf_counter()
                await model_server.wait_ready(client, args.ready_timeout_s)
                logger.info("%s: model server ready in %.0f s", side.name, time.perf_counter() - started)
            for replicas in replica_counts(side, args):
                found[entry_name(side, replicas)] = await measure_replicas(side, args, work, prompt, client,
                                                                           model_server, replicas)
            if model_server is not None:
                first = found[entry_name(side, replica_counts(side, args)[0])]
                first["model_server_command"] = vllm_command(args, vllm_port)[1:]
                first.update(await model_server_alone(client, model_server.url, tokenizer, prompt,
                                                      first["model_prompt_tokens_per_request"], args))
    finally:
        if model_server is not None:
            model_server.stop()
    for name, result in found.items():
        result["single_stream_tokens_per_s"] = result["single"]["tokens_per_s"]
        result["ttft_ms"] = result["single"]["ttft_ms_p50"]
        for concurrency in args.concurrency:
            result[f"aggregate_tokens_per_s_at_{concurrency}"] = result[f"aggregate_at_{concurrency}"]["tokens_per_s"]
        logger.info("%s: %s", name, json.dumps(result))
    return found


async def model_server_alone(client: httpx.AsyncClient, url: str, tokenizer: Any, prompt: Prompt,
                             service_prompt_tokens: float, args: argparse.Namespace) -> dict[str, Any]:
    """The model server driven directly: with the bare prompt (the engine's limit), then with a prompt as long as
    the one the service sent it (its system prompt and retrieved context added), which tells what the longer
    prompt costs the engine from what the service's own work costs."""
    alone = Endpoint((url,), VLLM_MODEL_NAME, VLLM_TOKENS)
    found = {"model_server_alone": await speeds(client, alone, prompt, args)}
    long_prompt = Prompt(prompt_text(tokenizer, int(service_prompt_tokens)), prompt.distinct)
    before = await read_counter(client, (url,), VLLM_PROMPT_TOKENS)
    found["model_server_alone_at_service_prompt_length"] = await speeds(client, alone, long_prompt, args)
    seen = await read_counter(client, (url,), VLLM_PROMPT_TOKENS) - before
    found["model_server_alone_at_service_prompt_length"]["model_prompt_tokens_per_request"] = \
        round(seen / requests_made(args), 1)
    return found


async def measure_replicas(side: Side, args: argparse.Namespace, work: Path, prompt: Prompt, client: httpx.AsyncClient,
                           model_server: Server | None, replicas: int) -> dict[str, Any]:
    """`replicas` service processes, requests spread over them in turn: their speeds and what they cost."""
    services: list[Server] = []
    try:
        started = time.perf_counter()
        for replica in range(replicas):
            port = free_port()
            config = service_config(
                side, work, port, model_dir=args.model_dir, max_concurrent=max(args.concurrency),
                new_tokens=args.new_tokens, model_server_url=model_server and model_server.url, replica=replica,
                embedding={"device": args.service_embedding_device, "runtime": args.service_encoder_runtime})
            services.append(Server.service(config, port, work / f"{side.name}-{replica}.log"))
        for service in services:
            await service.wait_ready(client, args.ready_timeout_s)
        ready_s = time.perf_counter() - started
        through_service = Endpoint(tuple(service.url for service in services), "aligned-rag", SERVICE_TOKENS)
        for turn in range(args.warmup * replicas):
            await one_turn(client, through_service, prompt, args.new_tokens, turn)
        model_server_log = Path(model_server.log.name) if model_server is not None else None
        result: dict[str, Any] = {"what": side.what, "engine": side.engine, "load_in_4bit": side.load_in_4bit,
                                  "attention": served_attention(side, args, model_server_log),
                                  "service_replicas": replicas,
                                  "service_embedding_device": args.service_embedding_device,
                                  "service_encoder_runtime": args.service_encoder_runtime,
                                  "ready_s": round(ready_s, 1)}
        if model_server is None:
            result.update(await speeds(client, through_service, prompt, args))
        else:
            # What the model saw per request through the service: its system prompt and retrieved context added.
            before = await read_counter(client, (model_server.url,), VLLM_PROMPT_TOKENS)
            result.update(await speeds(client, through_service, prompt, args))
            seen = await read_counter(client, (model_server.url,), VLLM_PROMPT_TOKENS) - before
            result["model_prompt_tokens_per_request"] = round(seen / requests_made(args), 1)
        result["gpu_memory_used_gb"] = gpu_memory_used_gb()
    finally:
        for service in services:
            service.stop()
    return result


async def speeds(client: httpx.AsyncClient, endpoint: Endpoint, prompt: Prompt,
                 args: argparse.Namespace) -> dict[str, Any]:
    """Single-stream requests one after another, then each concurrency level."""
    found = {"single": await single_stream(client, endpoint, prompt, args.new_tokens, args.single_runs)}
    window_s = burst_window(args.window_s, found["single"]["tokens_per_s"], args.new_tokens)
    for concurrency in args.concurrency:
        bursts = [await aggregate(client, endpoint, prompt, args.new_tokens, concurrency, window_s)
                  for _ in range(args.bursts)]
        found[f"aggregate_at_{concurrency}"] = median_burst(bursts)
    return found


def burst_window(window_s: float, single_tokens_per_s: float, new_tokens: int) -> float:
    """`window_s`, or twice one single-stream request's time when that is longer: a window shorter than one request
    (the sequential baseline: 128 tokens at 5.8 tokens/s on an H100) measures nothing."""
    if not single_tokens_per_s:
        return window_s
    return round(max(window_s, 2 * new_tokens / single_tokens_per_s), 1)


def median_burst(bursts: list[dict[str, Any]]) -> dict[str, Any]:
    """The burst with the median rate (the lower middle one of an even count), and every burst's rate."""
    rates = [burst["tokens_per_s"] or 0.0 for burst in bursts]
    middle = bursts[rates.index(statistics.median_low(rates))]
    return {**middle, "tokens_per_s_each_burst": rates}


def requests_made(args: argparse.Namespace) -> int:
    """Requests `speeds` sends: the single-stream runs and every request of each burst at each concurrency level
    (a burst cut by its window still sent them all)."""
    return args.single_runs + args.bursts * sum(args.concurrency)


def served_attention(side: Side, args: argparse.Namespace, model_server_log: Path | None = None) -> str | None:
    """The kernel the service gives its continuous-batching engine on this machine: "model default" where it
    leaves the model's own, None for the sequential engine (plain `generate`); for vLLM, the backend it chose."""
    if model_server_log is not None:
        chosen = VLLM_ATTENTION.search(model_server_log.read_text(encoding="utf-8", errors="replace"))
        return f"vllm:{chosen.group(1)}" if chosen else "vllm: not in its log"
    if side.engine != "continuous":
        return None
    import torch

    from agents.continuous_generator import engine_attention

    return engine_attention(side.attention, torch.device(args.device)) or "model default"


def serves_through_vllm(args: argparse.Namespace) -> bool:
    return any(SIDES[name].backend == "openai" for name in args.sides)


def prepare(args: argparse.Namespace) -> Any:
    """The random 8B-shaped model and adapter, once; the tokenizer for the prompts."""
    from benchmarks.llama_shape import save_merged_model, save_random_adapter, save_random_model
    from configs.settings import ModelSettings
    from finetune.export import save_quantized
    from finetune.modeling import load_tokenizer

    tokenizer = load_tokenizer(ModelSettings(name_or_path=str(args.tokenizer)))
    save_random_model(args.shape, args.model_dir / "model", args.device, tokenizer)
    save_random_adapter(args.model_dir / "model", args.model_dir / "adapter", args.device)
    if serves_through_vllm(args):
        merged = save_merged_model(args.model_dir / "model", args.model_dir / "adapter", args.model_dir / "merged",
                                   args.device)
        if args.vllm_weights == "int8" and not (served_dir(args) / "config.json").is_file():
            save_quantized(merged, served_dir(args), "int8", args.device, args.int8_group_size or None)
    return tokenizer


def versions(args: argparse.Namespace) -> dict[str, str]:
    import fastapi
    import torch
    import transformers

    try:
        flash_attention_4 = importlib.metadata.version("flash-attn-4")
    except importlib.metadata.PackageNotFoundError:
        flash_attention_4 = "not installed"
    found = {"python": platform.python_version(), "torch": torch.__version__,
             "transformers": transformers.__version__, "fastapi": fastapi.__version__,
             "cuda": torch.version.cuda or "none", "flash_attn_4": flash_attention_4}
    if serves_through_vllm(args):  # vLLM runs in its own environment
        found["vllm"] = subprocess.run(
            [args.vllm_python, "-c", "import vllm; print(vllm.__version__)"], check=False, capture_output=True,
            text=True, env={**os.environ, **dict(args.vllm_env)}, timeout=300,
        ).stdout.strip() or "not found"
    return found


def ratio(project: float | None, baseline: float | None) -> float | None:
    return round(project / baseline, 2) if project and baseline else None


def at_least_one(text: str) -> int:
    """An argparse type: a whole number, at least one (service processes, bursts)."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def replica_counts(side: Side, args: argparse.Namespace) -> list[int]:
    return args.service_replicas if side.backend == "openai" else args.service_replicas[:1]


def reported_entry(side: Side, args: argparse.Namespace) -> str:
    """The entry reported as the side's `project` or `baseline` row and in the ratios: its last replica count (a
    side with its model in the service's process runs only the first, so that one)."""
    return entry_name(side, replica_counts(side, args)[-1])


def build_report(args: argparse.Namespace, argv: list[str] | None, found_versions: dict[str, str], tokenizer: Any,
                 prompt: Prompt, sides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    project_side = reported_entry(SIDES[args.project_side], args)
    baseline, project = sides.get(reported_entry(SIDES["baseline"], args)), sides.get(project_side)
    top = max(args.concurrency)
    return {
        "command": "python -m benchmarks.generate_throughput " + " ".join(argv or sys.argv[1:]),
        "date": datetime.date.today().isoformat(),
        "device": device_name(),
        "versions": found_versions,
        "shape": args.shape,
        "prompt_tokens": len(tokenizer(prompt.text, add_special_tokens=False)["input_ids"]),
        "distinct_prompts": prompt.distinct,
        "new_tokens": args.new_tokens,
        "vllm_weights": (args.vllm_weights if args.vllm_weights == "bf16" else
                         f"int8, {args.int8_group_size or 'one scale per output channel'} inputs per scale")
        if serves_through_vllm(args) else None,
        "baseline": baseline,
        "project_side": project_side,
        "project": project,
        "sides": sides,
        "ratio_single": ratio(project and project["single_stream_tokens_per_s"],
                              baseline and baseline["single_stream_tokens_per_s"]),
        "ratio_aggregate": ratio(project and project[f"aggregate_tokens_per_s_at_{top}"],
                                 baseline and baseline[f"aggregate_tokens_per_s_at_{top}"]),
        "method": __doc__.split("\n\n")[1],
    }


def print_table(report: dict[str, Any], concurrency: list[int]) -> None:
    columns = ["single tok/s", "TTFT ms", *(f"agg@{c} tok/s" for c in concurrency), "GPU GB"]
    print(f"{'side':<16}" + "".join(f"{c:>15}" for c in columns))

    def line(name: str, found: dict[str, Any], memory: float | None) -> None:
        cells = [found["single"]["tokens_per_s"], found["single"]["ttft_ms_p50"],
                 *(found[f"aggregate_at_{c}"]["tokens_per_s"] for c in concurrency), memory]
        print(f"{name:<16}" + "".join(f"{'-' if v is None else v:>15}" for v in cells))

    for name, row in report["sides"].items():
        line(name, row, row["gpu_memory_used_gb"])
        for alone, label in (("model_server_alone", "  server alone"),
                             ("model_server_alone_at_service_prompt_length", "  ..long prompt")):
            if alone in row:
                line(label, row[alone], None)
    print(f"ratio single {report['ratio_single']}x, aggregate@{max(concurrency)} {report['ratio_aggregate']}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", type=Path, required=True,
                        help="a chat tokenizer folder (prompts and the model's tokenizer; random weights need no hub)")
    parser.add_argument("--shape", choices=["llama31-8b", "tiny"], default="llama31-8b")
    parser.add_argument("--model-dir", type=Path, default=Path("/dev/shm/generate-bench"))
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--sides", nargs="+", choices=list(SIDES), default=["baseline", "project", "project_nf4"])
    parser.add_argument("--project-side", choices=list(SIDES), default="project",
                        help="the side reported as `project` and in the ratios")
    parser.add_argument("--vllm-python", default=sys.executable, help="the Python that has vLLM (its own environment)")
    parser.add_argument("--vllm-env", action="append", type=env_pair, default=[], metavar="KEY=VALUE",
                        help="environment for the vLLM server only (repeatable), e.g. PYTHONPATH=/opt/vllm-site")
    parser.add_argument("--vllm-gpu-memory-utilization", type=float, default=0.8,
                        help="vLLM's share of GPU memory (the service's guard and embeddings use some too)")
    parser.add_argument("--vllm-arg", action="append", default=[], metavar="=--FLAG[=VALUE]",
                        help="one more argument for the vLLM server (repeatable), e.g. --vllm-arg=--stream-interval=4")
    parser.add_argument("--vllm-weights", choices=["bf16", "int8"], default="bf16",
                        help="the merged copy vLLM serves: bf16, or weight-only int8 (python -m finetune.export)")
    parser.add_argument("--int8-group-size", type=int, default=64,
                        help="the int8 copy's inputs per scale (0: one scale per output channel)")
    parser.add_argument("--service-replicas", type=at_least_one, nargs="+", default=[1],
                        help="service processes in front of the model server, requests spread over them in turn "
                             "(the deployment's replicas behind nginx); each count measured against the same "
                             "server, the last reported as the project")
    parser.add_argument("--service-embedding-device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="embedding.device of the service: where its guard and retriever encode")
    parser.add_argument("--service-encoder-runtime", choices=get_args(EncoderRuntime), default="auto",
                        help="embedding.runtime of the service: what runs its encoders (auto: CUDA graphs on a GPU)")
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--distinct-prompts", action="store_true",
                        help="a ticket number of its own in front of every request, so no cache answers for it "
                             "(the recorded runs sent one prompt throughout)")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--single-runs", type=int, default=3)
    parser.add_argument("--bursts", type=at_least_one, default=3, help="bursts per concurrency level (the median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="requests before timing")
    parser.add_argument("--window-s", type=float, default=60.0, help="the most an aggregate measurement waits")
    parser.add_argument("--ready-timeout-s", type=float, default=600.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--debug", action="store_true", help="tracebacks on errors")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise

    def run() -> int:
        tokenizer = prepare(args)
        prompt = Prompt(prompt_text(tokenizer, args.prompt_tokens), args.distinct_prompts)
        work = Path(tempfile.mkdtemp(prefix="generate-bench-"))
        found_versions = versions(args)
        sides: dict[str, dict[str, Any]] = {}
        for name in args.sides:
            sides.update(asyncio.run(measure(SIDES[name], args, work, tokenizer, prompt)))
            # Rewritten after every side: a run cut short keeps the sides it finished.
            report = build_report(args, argv, found_versions, tokenizer, prompt, sides)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        logger.info("service logs: %s", work)
        print_table(report, args.concurrency)
        return 0

    return run_cli(run, debug=args.debug)


def device_name() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"


if __name__ == "__main__":
    sys.exit(main())
