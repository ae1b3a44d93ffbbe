"""What runs the guard's encoder: torch float32, ONNX Runtime (the CPU default) and torch dynamic int8; cost per
verdict on one thread, and how far each moves the scores from torch float32.

    python -m benchmarks.guard_runtime [--config ...] [--max-requests N] [--max-responses N] [--output FILE]

Every guard loads the shipped weights; every sampled row of lab.guard's validation sets goes through each
guard's public API one at a time (one thread), interleaved so all see the same machine load. The heads and
thresholds were calibrated on float32 scores: the report gives each variant's absolute score differences from
torch float32 and the verdicts that flip at the shipped thresholds. It also splits one request verdict into
tokenizing, the forward and the heads, and times the forward per text by length and batch size for torch and
ONNX Runtime alone (the crossover behind retrieval.hidden_states.ONNX_MAX_BATCH_TOKENS).
Measured for issue 20 (benchmarks/results/guard_runtime.json): int8 halves the forward but flips about 4% of
the verdicts; ONNX Runtime halves it for short texts with the scores unchanged, so the CPU guard uses it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from agents.safety.classifier import EmbeddingClassifierGuard
from agents.safety.encoder import MAX_TOKENS, SentenceEncoder
from configs.settings import PROJECT_ROOT
from lab.guard.cli import base_parser, run, settings_from
from lab.guard.sources import MIX_FILE, load_mix
from lab.guard.splits import request_validation_sets, response_validation_sets
from lab.guard.training_data import Example, SafetyData, SplitSizes
from retrieval.hidden_states import ONNX_MAX_BATCH_TOKENS, HiddenStates

LENGTHS = (16, 32, 64, 128, 256)
BATCHES = (1, 4, 32)
REFERENCE = "float32"


def median_ms(seconds: list[float]) -> float:
    return round(statistics.median(seconds) * 1000.0, 2)


def guard_on(guard: EmbeddingClassifierGuard, hidden_states: HiddenStates) -> EmbeddingClassifierGuard:
    """`guard` with another encoder runtime; same tokenizer, heads and thresholds."""
    encoder = SentenceEncoder(guard.encode.tokenizer, hidden_states, guard.encode.cache_size)
    return EmbeddingClassifierGuard(
        guard.heads,
        encoder,
        request_threshold=guard.request_threshold,
        response_threshold=guard.response_threshold,
        category_min_probability=guard.category_min_probability,
    )


def int8_model(model: Any) -> Any:
    """The merged MiniLM with its Linear layers dynamically quantized (qint8 weights, per-tensor scales),
    PyTorch's standard CPU speed option for BERT-style encoders."""
    import torch

    # Eager-mode quantization is deprecated in favour of torchao (not installed here); it still runs in torch 2.13.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def judge(guards: dict[str, EmbeddingClassifierGuard], stage: str, rows: list[Example]) -> dict[str, Any]:
    """Each row through both guards in turn: scores, verdicts, wall and thread CPU time per verdict."""
    scores: dict[str, list[float]] = {p: [] for p in guards}
    flagged: dict[str, list[bool]] = {p: [] for p in guards}
    wall: dict[str, list[float]] = {p: [] for p in guards}
    cpu: dict[str, list[float]] = {p: [] for p in guards}
    for example in rows:
        messages = [{"role": "user", "content": example.request}]
        for precision, guard in guards.items():
            started, started_cpu = time.perf_counter(), time.thread_time()
            verdict = (
                guard.check_request(messages)
                if stage == "request"
                else guard.check_response(messages, example.answer or "")
            )
            cpu[precision].append(time.thread_time() - started_cpu)
            wall[precision].append(time.perf_counter() - started)
            scores[precision].append(verdict.score)
            flagged[precision].append(not verdict.safe)
    truth = np.array([e.unsafe for e in rows])
    correct = {p: int((np.array(flagged[p]) == truth).sum()) for p in guards}
    moved: dict[str, Any] = {}
    for variant in guards:
        if variant == REFERENCE:
            continue
        difference = np.abs(np.array(scores[variant]) - np.array(scores[REFERENCE]))
        moved[variant] = {
            "score_abs_difference": {
                "max": float(f"{difference.max():.3g}"),
                "mean": float(f"{difference.mean():.3g}"),
                "p99": float(f"{np.percentile(difference, 99):.3g}"),
            },
            "flipped_verdicts": int(
                sum(a != b for a, b in zip(flagged[REFERENCE], flagged[variant], strict=True))
            ),
        }
    return {
        "rows": len(rows),
        "against_float32": moved,
        "correct_verdicts": correct,
        "median_wall_ms": {p: median_ms(wall[p]) for p in guards},
        "median_thread_cpu_ms": {p: median_ms(cpu[p]) for p in guards},
    }


def breakdown(guard: EmbeddingClassifierGuard, texts: list[str]) -> dict[str, float]:
    """One request verdict split into tokenizing, the forward and pooling, and the heads (thread CPU, median)."""
    encoder, parts = guard.encode, {"tokenize": [], "forward": [], "heads": []}
    for text in texts:
        t0 = time.thread_time()
        batch = encoder.tokenizer(
            [text], padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="np"
        )
        t1 = time.thread_time()
        embedding = encoder.hidden_states.sentence_embeddings(batch)
        t2 = time.thread_time()
        guard.heads.request.unsafe.unsafe_probability(embedding)
        t3 = time.thread_time()
        for part, seconds in zip(parts, (t1 - t0, t2 - t1, t3 - t2), strict=True):
            parts[part].append(seconds)
    return {part: median_ms(seconds) for part, seconds in parts.items()}


def forward_by_shape(runtimes: dict[str, Any], repeats: int = 64) -> dict[str, dict[str, float]]:
    """Thread CPU per text of one forward, by length in word pieces and batch size (median over batches)."""
    times: dict[str, dict[str, float]] = {name: {} for name in runtimes}
    for length in LENGTHS:
        for size in BATCHES:
            ids = np.full((size, length), 1000, dtype=np.int64)
            batch = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
            for name, run_forward in runtimes.items():
                run_forward(batch)  # ONNX Runtime plans each new shape once
                samples = []
                for _ in range(max(3, repeats // size)):
                    started = time.thread_time()
                    run_forward(batch)
                    samples.append((time.thread_time() - started) / size)
                times[name][f"{length}x{size}"] = median_ms(samples)
    return times


def main(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(1)  # the latency target is per verdict on one core
    settings = settings_from(args)
    shipped = EmbeddingClassifierGuard.load(settings.safety.classifier_path, runtime="onnx")
    model = shipped.encode.hidden_states.model
    guards = {
        REFERENCE: guard_on(shipped, HiddenStates(model)),
        "onnx": shipped,
        "int8": guard_on(shipped, HiddenStates(int8_model(model))),
    }
    data, mix = SafetyData(settings.data_dir, settings.safety.seed), load_mix(MIX_FILE)
    requests = [e for rows in request_validation_sets(data, mix, SplitSizes()).values() for e in rows]
    responses = [e for rows in response_validation_sets(data, mix).values() for e in rows]
    rng = random.Random(settings.safety.seed)
    requests = rng.sample(requests, min(args.max_requests, len(requests))) if args.max_requests else requests
    responses = (
        rng.sample(responses, min(args.max_responses, len(responses))) if args.max_responses else responses
    )
    lengths = [
        len(ids) for ids in guards["float32"].encode.tokenizer([e.request for e in requests])["input_ids"]
    ]

    load_at_start = os.getloadavg()[0]
    sample = [e.request for e in rng.sample(requests, min(300, len(requests)))]
    for guard in guards.values():  # warm up
        breakdown(guard, sample[:20])
    report: dict[str, Any] = {
        "command": "python -m benchmarks.guard_runtime " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_cores": os.cpu_count(),
        "thresholds": {
            "request": guards["float32"].request_threshold,
            "response": guards["float32"].response_threshold,
        },
        "request_word_pieces": {
            "median": float(np.median(lengths)),
            "p90": float(np.percentile(lengths, 90)),
            "p99": float(np.percentile(lengths, 99)),
            "max": max(lengths),
            f"share_over_{MAX_TOKENS}": round(float(np.mean(np.array(lengths) > MAX_TOKENS)), 4),
        },
        "request_verdict_parts_ms": {p: breakdown(g, sample) for p, g in guards.items()},
        "onnx_max_batch_tokens": ONNX_MAX_BATCH_TOKENS,
        "forward_ms_per_text_by_tokens_x_batch": forward_by_shape({
            "torch float32": HiddenStates(model),
            "onnx runtime alone": shipped.encode.hidden_states.onnx,
            "torch int8": guards["int8"].encode.hidden_states,
        }),
        "request": judge(guards, "request", requests),
        "response": judge(guards, "response", responses),
    }
    report["load_average_1min"] = {"start": round(load_at_start, 2), "end": round(os.getloadavg()[0], 2)}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = base_parser("python -m benchmarks.guard_runtime", __doc__.splitlines()[0])
    parser.add_argument(
        "--max-requests", type=int, help="seeded sample of the request validation rows (default: all)"
    )
    parser.add_argument(
        "--max-responses", type=int, help="seeded sample of the response validation rows (default: all)"
    )
    parser.add_argument(
        "--output", type=Path, default=PROJECT_ROOT / "benchmarks" / "results" / "guard_runtime.json"
    )
    return parser


if __name__ == "__main__":
    sys.exit(run(main, build_parser(), None))
