"""Which continuous-batching settings serve fastest: transformers' engine alone (no API), in one process, on a
Llama-3.1-8B-shaped bf16 model with random weights, against `generate` with a static cache and `torch.compile`
(transformers' own compiled-generation path, what a practitioner tunes plain `generate` to).

Per setting: single-stream tokens/s and time to first token (requests one after another), and aggregate tokens/s
with N requests added at once (one untimed round at the same concurrency first, so the CUDA graphs that
concurrency needs are captured, as they are in a server that has run a while). The settings map to
`model.engine` in configs/settings.py. Writes benchmarks/results/engine_settings.json and prints a table.

    python -m benchmarks.engine_settings --settings graphs_coarse graphs_fine graphs_fine_async
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.llama_shape import SHAPES
from configs.cli import run_cli
from configs.settings import PROJECT_ROOT, EngineSettings

logger = logging.getLogger("benchmarks.engine_settings")

RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "engine_settings.json"

# name -> ContinuousBatchingConfig fields (the `model.engine` settings that set them), and the engine's
# `attention` kernel (model.engine.attention; SDPA where not named)
_ENGINE = EngineSettings()
FINE = {"use_cuda_graph": True, "q_padding_interval_size": _ENGINE.query_padding_tokens,
        "kv_padding_interval_size": _ENGINE.key_padding_tokens}
SETTINGS: dict[str, dict[str, Any]] = {
    "no_graphs": {"use_cuda_graph": False},
    # transformers' padding for CUDA graphs: queries to 64 tokens, keys to 16,384 (what the service ran before)
    "graphs_coarse": {"use_cuda_graph": True},
    "graphs_fine": FINE,  # the service's default (model.engine.query_padding_tokens, key_padding_tokens)
    "graphs_fine_kv2048": FINE | {"kv_padding_interval_size": 2048},
    "graphs_fine_async": FINE | {"use_async_batching": True},
    "graphs_fine_async_compiled": FINE | {"use_async_batching": True, "default_compile_level": 1},
    # FlashAttention 4 (the flash-attn-4 package): each request attends over its own keys only
    "fa4_no_graphs": {"use_cuda_graph": False, "attention": "flash_attention_4"},
    "fa4_graphs_coarse": {"use_cuda_graph": True, "attention": "flash_attention_4"},
    "fa4_graphs_fine": FINE | {"attention": "flash_attention_4"},
}


def random_model(shape: str, device: str) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM._from_config(LlamaConfig(**SHAPES[shape]), dtype=torch.bfloat16)
    return model.eval()


def prompts(count: int, tokens: int, vocab: int, seed: int) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(1000, vocab - 1000, (count, tokens), generator=generator).tolist()


def run_requests(manager: Any, batch: list[list[int]], new_tokens: int, tag: str) -> dict[str, Any]:
    """Add every prompt at once; wait for all. Time to first token and tokens per request, and the aggregate rate."""
    started = time.perf_counter()
    first: dict[str, float] = {}
    done: dict[str, int] = {}
    for index, prompt in enumerate(batch):
        manager.add_request(prompt, request_id=f"{tag}-{index}", max_new_tokens=new_tokens, streaming=True)
    while len(done) < len(batch):
        output = manager.get_result(timeout=60.0)
        if output is None:
            raise RuntimeError(f"no output for 60 s ({len(done)}/{len(batch)} done)")
        if output.error:
            raise RuntimeError(output.error)
        now = time.perf_counter() - started
        if output.generated_tokens and output.request_id not in first:
            first[output.request_id] = now
        if output.is_finished():
            done[output.request_id] = len(output.generated_tokens)
    elapsed = time.perf_counter() - started
    tokens = sum(done.values())
    return {"requests": len(batch), "tokens": tokens, "seconds": round(elapsed, 3),
            "tokens_per_s": round(tokens / elapsed, 1),
            "ttft_ms_p50": round(1000 * statistics.median(first.values()), 1)}


def measure_engine(model: Any, name: str, args: argparse.Namespace) -> dict[str, Any]:
    from transformers import GenerationConfig
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    generation = GenerationConfig(max_new_tokens=args.new_tokens, do_sample=False, eos_token_id=None,
                                  pad_token_id=0)
    fields = dict(SETTINGS[name])
    model.set_attn_implementation(fields.pop("attention", "sdpa"))
    batching = ContinuousBatchingConfig(max_memory_percent=args.kv_cache_memory_percent,
                                        max_requests_per_batch=max(args.concurrency), auto_switch_to_flash=False,
                                        **fields)
    started = time.perf_counter()
    manager = model.init_continuous_batching(generation_config=generation, continuous_batching_config=batching)
    manager.warmup()
    manager.start()
    ready_s = time.perf_counter() - started
    vocab = model.config.vocab_size
    result: dict[str, Any] = {"settings": SETTINGS[name], "ready_s": round(ready_s, 1)}
    try:
        run_requests(manager, prompts(2, args.prompt_tokens, vocab, 1)[:1], args.new_tokens, "warm")
        singles = [run_requests(manager, prompts(1, args.prompt_tokens, vocab, 10 + run), args.new_tokens,
                                f"single{run}") for run in range(args.single_runs)]
        result["single"] = {"tokens_per_s": statistics.median(s["tokens_per_s"] for s in singles),
                            "ttft_ms_p50": statistics.median(s["ttft_ms_p50"] for s in singles),
                            "runs": singles}
        for concurrency in args.concurrency:
            run_requests(manager, prompts(concurrency, args.prompt_tokens, vocab, 100 + concurrency),
                         args.new_tokens, f"warm{concurrency}")
            result[f"aggregate_at_{concurrency}"] = run_requests(
                manager, prompts(concurrency, args.prompt_tokens, vocab, 200 + concurrency), args.new_tokens,
                f"at{concurrency}")
    finally:
        manager.stop(block=True, timeout=30.0, hard_stop=True)
        model.destroy_cached_continuous_batching_manager()
        del manager
    result["gpu_peak_gb"] = gpu_peak_gb()
    return result


def measure_static_generate(model: Any, args: argparse.Namespace) -> dict[str, Any]:
    """`generate` with a static cache: transformers compiles the forward (mode reduce-overhead, CUDA graphs)."""
    vocab = model.config.vocab_size
    model.set_attn_implementation("sdpa")  # what transformers compiles; a flash kernel breaks the graph
    result: dict[str, Any] = {"what": "generate, cache_implementation=static (auto torch.compile, CUDA graphs)"}
    for batch_size in [1, *args.concurrency]:
        batch = torch.tensor(prompts(batch_size, args.prompt_tokens, vocab, 300 + batch_size), device=model.device)
        options = {"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens, "do_sample": False,
                   "cache_implementation": "static", "pad_token_id": 0}
        started = time.perf_counter()
        for _ in range(2):  # compile, then capture the graphs
            model.generate(batch, **options)
        compile_s = time.perf_counter() - started
        times = []
        for _ in range(args.single_runs):
            begun = time.perf_counter()
            out = model.generate(batch, **options)  # returns token ids on the host side: synchronised
            times.append(time.perf_counter() - begun)
        new = (out.shape[1] - batch.shape[1]) * batch_size
        key = "single" if batch_size == 1 else f"aggregate_at_{batch_size}"
        result[key] = {"tokens_per_s": round(new / statistics.median(times), 1), "compile_s": round(compile_s, 1),
                       "seconds_each": [round(t, 3) for t in times], "requests": batch_size}
    result["gpu_peak_gb"] = gpu_peak_gb()
    return result


def gpu_peak_gb() -> float | None:
    """Peak allocated since the last call (None off the GPU); frees the cached blocks for the next setting."""
    if not torch.cuda.is_available():
        return None
    peak = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    return peak


def device_name(device: str) -> str:
    return torch.cuda.get_device_name() if device == "cuda" else platform.processor() or platform.machine()


def versions() -> dict[str, str]:
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "cuda": str(torch.version.cuda)}


def print_table(report: dict[str, Any], concurrency: list[int]) -> None:
    header = ["setting", "ready s", "single tok/s", "TTFT ms", *[f"agg@{c}" for c in concurrency], "peak GB"]
    print(" | ".join(header))
    for name, row in report["results"].items():
        if "error" in row:
            print(f"{name} | failed: {row['error'][:120]}")
            continue
        single = row.get("single", {})
        cells = [name, str(row.get("ready_s", "")), str(single.get("tokens_per_s")), str(single.get("ttft_ms_p50", ""))]
        cells += [str(row.get(f"aggregate_at_{c}", {}).get("tokens_per_s")) for c in concurrency]
        print(" | ".join([*cells, str(row.get("gpu_peak_gb"))]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="+", choices=[*SETTINGS, "static_generate"],
                        default=[*SETTINGS, "static_generate"])
    parser.add_argument("--shape", choices=list(SHAPES), default="llama31-8b")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: a smoke test only")
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--single-runs", type=int, default=3)
    parser.add_argument("--kv-cache-memory-percent", type=float, default=0.5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--debug", action="store_true", help="tracebacks on errors")
    args = parser.parse_args(argv)

    def run() -> int:
        import sys

        report: dict[str, Any] = {
            "command": "python -m benchmarks.engine_settings " + " ".join(sys.argv[1:]),
            "date": datetime.date.today().isoformat(), "device": device_name(args.device),
            "versions": versions(), "shape": args.shape, "prompt_tokens": args.prompt_tokens,
            "new_tokens": args.new_tokens, "results": {},
        }
        model = random_model(args.shape, args.device)
        for name in args.settings:
            logger.info("measuring %s", name)
            try:
                row = (measure_static_generate(model, args) if name == "static_generate"
                       else measure_engine(model, name, args))
            except Exception as exc:  # one failing setting must not lose the others' figures
                logger.exception("%s failed", name)
                row = {"error": f"{type(exc).__name__}: {exc}"}
            report["results"][name] = row
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=1) + "\n")  # after each: a timeout keeps the rest
        print_table(report, args.concurrency)
        return 0

    return run_cli(run, debug=args.debug)


if __name__ == "__main__":
    raise SystemExit(main())
