"""What the service itself costs per turn and per streamed token, apart from any model.

The service (`python -m api`, `model.backend: openai`, the benchmark's linear workflow: guard, retrieval,
generation, output guard) runs in front of `benchmarks.paced_server`, which streams a fixed word at a fixed pace
like a batched decoder would; the same measurements are then sent to the paced server directly. The gap between
the two is the service: its guard and retriever encoders (on the CPU here), its graph, its streaming path. With
`--pin` the service runs on CPU 0 alone and everything else on the other CPUs, so the service's own core is what
is measured (it is one process: its Python runs on one core at a time). Writes
benchmarks/results/service_overhead.json.

    python -m benchmarks.service_overhead --pin
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import logging
import os
import platform
import re
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from benchmarks.generate_throughput import (
    SERVICE_TOKENS,
    SIDES,
    Endpoint,
    Prompt,
    aggregate,
    one_turn,
    prompt_text,
    service_config,
    single_stream,
)
from benchmarks.paced_server import TOKENS_METRIC
from benchmarks.servers import Server, free_port
from configs.cli import run_cli
from configs.settings import EMBEDDED_GENERATOR, PROJECT_ROOT, ModelSettings

logger = logging.getLogger("benchmarks.service_overhead")

RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "service_overhead.json"
PACED_TOKENS = re.compile(rf"^{TOKENS_METRIC} (\S+)$", re.MULTILINE)


def median_node_ms(bursts: list[dict[str, Any]]) -> dict[str, float]:
    """Each graph step's median time per run over the bursts that timed it."""
    timed = [burst["node_ms_per_run"] for burst in bursts if burst.get("node_ms_per_run")]
    nodes = dict.fromkeys(node for found in timed for node in found)
    return {node: round(statistics.median(found[node] for found in timed if node in found), 1) for node in nodes}


async def bursts(client: httpx.AsyncClient, endpoint: Endpoint, prompt: Prompt, args: argparse.Namespace) -> dict:
    """Single-stream requests, then `--repeats` bursts of `--concurrency` requests: the median burst and all."""
    single = await single_stream(client, endpoint, prompt, args.new_tokens, args.single_runs)
    found = [await aggregate(client, endpoint, prompt, args.new_tokens, args.concurrency, args.window_s)
             for _ in range(args.repeats)]
    rates = [burst["tokens_per_s"] or 0.0 for burst in found]
    return {
        "single": single,
        f"aggregate_at_{args.concurrency}": {
            "tokens_per_s_median": round(statistics.median(rates), 1),
            "ttft_ms_p50_median": round(statistics.median(burst.get("ttft_ms_p50", 0.0) for burst in found), 1),
            "server_cpu_cores_median": round(statistics.median(burst.get("server_cpu_cores", 0.0)
                                                               for burst in found), 2),
            "node_ms_per_run_median": median_node_ms(found),
            "bursts": found,
        },
    }


async def measure(args: argparse.Namespace, prompt: Prompt, work: Path) -> dict[str, Any]:
    others = None
    if args.pin:
        others = set(os.sched_getaffinity(0)) - {0} or None
    if others:
        os.sched_setaffinity(0, others)  # this client and the paced server off the service's core
    paced_port, service_port = free_port(), free_port()
    paced = Server([sys.executable, "-m", "benchmarks.paced_server", "--port", str(paced_port), "--interval-s",
                    str(args.interval_s), "--tokens-per-chunk", str(args.tokens_per_chunk)],
                   paced_port, work / "paced.log", "/health", cpus=others)
    config = service_config(SIDES["project_vllm"], work, service_port, max_concurrent=args.concurrency,
                            new_tokens=args.new_tokens, model_server_url=paced.url,
                            embedding={"device": "cpu", "runtime": "auto"})
    service = Server.service(config, service_port, work / "service.log", cpus={0} if args.pin else None)
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(args.window_s + 60, connect=10),
                                     limits=httpx.Limits(max_connections=4 * args.concurrency)) as client:
            await paced.wait_ready(client, args.ready_timeout_s)
            await service.wait_ready(client, args.ready_timeout_s)
            through_service = Endpoint((service.url,), "aligned-rag", SERVICE_TOKENS)
            for _ in range(args.warmup):
                await one_turn(client, through_service, prompt, args.new_tokens)
            return {
                "through_service": await bursts(client, through_service, prompt, args),
                "paced_server_alone": await bursts(client, Endpoint((paced.url,), "paced", PACED_TOKENS), prompt,
                                                   args),
            }
    finally:
        service.stop()
        paced.stop()


def run(args: argparse.Namespace, argv: list[str] | None) -> dict[str, Any]:
    import fastapi

    from finetune.modeling import load_tokenizer

    tokenizer = load_tokenizer(ModelSettings(name_or_path=EMBEDDED_GENERATOR))
    prompt = Prompt(prompt_text(tokenizer, args.prompt_tokens), args.distinct_prompts)
    with tempfile.TemporaryDirectory(prefix="service-overhead-") as work:
        found = asyncio.run(measure(args, prompt, Path(work)))
    return {
        "command": "python -m benchmarks.service_overhead " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.date.today().isoformat(),
        "device": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
                  + (": the service pinned to CPU 0" if args.pin else ""),
        "versions": {"python": platform.python_version(), "fastapi": fastapi.__version__},
        "prompt_tokens": len(tokenizer(prompt.text, add_special_tokens=False)["input_ids"]),
        "distinct_prompts": prompt.distinct,
        "new_tokens": args.new_tokens,
        "concurrency": args.concurrency,
        "paced_interval_s": args.interval_s,
        "tokens_per_chunk": args.tokens_per_chunk,
        **found,
    }


def print_table(report: dict[str, Any]) -> None:
    key = f"aggregate_at_{report['concurrency']}"
    burst = f"agg@{report['concurrency']} tok/s"
    print(f"{'':22}{'single tok/s':>14}{'TTFT ms':>10}{burst:>16}{'TTFT@agg ms':>13}{'server cores':>14}")
    for name in ("through_service", "paced_server_alone"):
        row = report[name]
        print(f"{name:22}{row['single']['tokens_per_s']:>14}{row['single']['ttft_ms_p50']:>10}"
              f"{row[key]['tokens_per_s_median']:>16}{row[key]['ttft_ms_p50_median']:>13}"
              f"{row[key]['server_cpu_cores_median']:>14}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--distinct-prompts", action="store_true",
                        help="a ticket number of its own in front of every request, so the guard's cache by text "
                             "answers for none (the recorded runs sent one prompt throughout)")
    parser.add_argument("--new-tokens", type=int, default=512)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--interval-s", type=float, default=0.002, help="the paced server's seconds per word")
    parser.add_argument("--tokens-per-chunk", type=int, default=1)
    parser.add_argument("--single-runs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5, help="bursts of --concurrency requests (median)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--window-s", type=float, default=120.0)
    parser.add_argument("--ready-timeout-s", type=float, default=300.0)
    parser.add_argument("--pin", action="store_true", help="the service on CPU 0, everything else elsewhere")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--debug", action="store_true", help="tracebacks on errors")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    def measure_and_report() -> int:
        report = run(args, argv)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print_table(report)
        return 0

    return run_cli(measure_and_report, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
