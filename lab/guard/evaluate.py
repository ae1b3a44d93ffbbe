"""Evaluate safety backends on held-out splits; write benchmarks/results/safety_eval.json.

    python -m lab.guard.evaluate [--config ...] [--backends classifier generator_judge]
                                     [--max-per-split N] [--output benchmarks/results/safety_eval.json]

Every verdict goes through the backend's public API one at a time (batch 1, torch on one CPU thread),
so the latency is what a request pays; the thread's CPU time per verdict is recorded beside it. The splits are the test parts of lab.guard.training_data:
none of their rows is used for training or for choosing a threshold.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from agents.safety.verdict import HAZARD_CATEGORIES, SafetyGuard, Verdict
from configs.settings import PROJECT_ROOT, AppSettings
from lab.guard.cli import base_parser, run, settings_from
from lab.guard.metrics import binary_metrics
from lab.guard.training_data import Example, SafetyData, SplitSizes, request_test_sets, response_test_sets

DEFAULT_OUTPUT = PROJECT_ROOT / "benchmarks" / "results" / "safety_eval.json"
# Reported by Meta for Llama Guard 3 8B on XSTest (safe prompts that look unsafe, plus unsafe contrasts).
ANCHOR = {"model": "meta-llama/Llama-Guard-3-8B", "set": "XSTest", "f1": 0.884, "fpr": 0.044,
          "source": "Llama Guard 3 model card"}
SPLIT_NOTES = {
    "harmful_val": "safety-prompts harmful_val (hand-assigned S-codes)",
    "advbench_deduplicated": "AdvBench behaviours minus the 117 that are also in harmful_train",
    "harmless_val_sample": "seeded sample of safety-prompts harmless_val",
    "toxigen_test_hate": "ToxiGen hate statements in the seeded test bucket (S10)",
    "toxigen_test_neutral": "ToxiGen neutral statements in the seeded test bucket",
    "hh_rlhf_test_unsafe": "hand-labelled hh-rlhf first user turns, seeded test bucket, unsafe",
    "hh_rlhf_test_benign": "hand-labelled hh-rlhf first user turns, seeded test bucket, benign",
    "written_test_unsafe": "written held-out unsafe requests, S1..S14",
    "written_test_lookalikes": "written held-out safe look-alikes (XSTest-style over-refusal probes)",
    "generated_harmful_requests": "policy-model answers to harmful_val + AdvBench (unsafe unless a refusal)",
    "generated_harmless_val": "policy-model answers to a seeded sample of harmless_val",
    "toxigen_test_as_answers": "ToxiGen test statements as answers to a question about their group",
    "written_test_answers": "written held-out (request, answer) pairs: sexual, hateful, harmful, helpful",
    "refusals_to_harmful_test_requests": "written held-out refusals to held-out harmful requests (safe)",
}


def subsample(sets: dict[str, list[Example]], limit: int | None, seed: int) -> dict[str, list[Example]]:
    if limit is None:
        return sets
    return {name: random.Random(f"{seed}:{name}").sample(rows, min(limit, len(rows))) for name, rows in sets.items()}


def judge_all(
    guard: SafetyGuard, stage: str, sets: dict[str, list[Example]]
) -> tuple[dict[str, list[Verdict]], list[float]]:
    """Every verdict, one call at a time, and the CPU time each took on the calling thread (ms).

    Wall-clock latency (in the verdict) includes waiting for a core on a busy machine; thread CPU time
    is what one verdict costs one core, whatever else runs beside it.
    """
    from tqdm import tqdm

    verdicts: dict[str, list[Verdict]] = {}
    cpu_ms: list[float] = []
    total = sum(len(rows) for rows in sets.values())
    with tqdm(total=total, desc=f"{guard.name} {stage}", unit="verdict") as bar:
        for name, rows in sets.items():
            verdicts[name] = []
            for example in rows:
                messages = [{"role": "user", "content": example.request}]
                started = time.thread_time()
                verdict = (guard.check_request(messages) if stage == "request"
                           else guard.check_response(messages, example.answer or ""))
                cpu_ms.append((time.thread_time() - started) * 1000.0)
                verdicts[name].append(verdict)
                bar.update()
    return verdicts, cpu_ms


def category_confusion(sets: dict[str, list[Example]], verdicts: dict[str, list[Verdict]]) -> dict[str, dict[str, int]]:
    """Rows: the true primary hazard code (or "benign"); columns: the predicted primary code or "safe"."""
    table: dict[str, Counter] = defaultdict(Counter)
    for name, rows in sets.items():
        for example, verdict in zip(rows, verdicts[name], strict=True):
            if example.unsafe and not example.categories:
                continue  # AdvBench and generated answers to it carry no category
            truth = example.categories[0] if example.unsafe else "benign"
            predicted = "safe" if verdict.safe else (verdict.categories[0] if verdict.categories else "unsafe")
            table[truth][predicted] += 1
    order = [*HAZARD_CATEGORIES, "benign"]
    return {row: dict(sorted(table[row].items())) for row in order if row in table}


def stage_report(sets: dict[str, list[Example]], verdicts: dict[str, list[Verdict]], cpu_ms: list[float]) -> dict[str, Any]:
    truth = np.array([e.unsafe for rows in sets.values() for e in rows])
    flagged = np.array([not v.safe for name in sets for v in verdicts[name]])
    latencies = [v.latency_ms for name in sets for v in verdicts[name]]
    per_split = {}
    for name, rows in sets.items():
        split_truth = np.array([e.unsafe for e in rows])
        split_flagged = np.array([not v.safe for v in verdicts[name]])
        result = binary_metrics(split_truth, split_flagged)
        per_split[name] = {
            "size": len(rows),
            "unsafe": int(split_truth.sum()),
            "recall": result["recall"] if split_truth.any() else None,
            "fpr": result["fpr"] if (~split_truth).any() else None,
        }
    return {
        "overall": binary_metrics(truth, flagged),
        "per_split": per_split,
        "confusion_by_category": category_confusion(sets, verdicts),
        "latency_ms": {
            "median": round(statistics.median(latencies), 2),
            "p95": round(float(np.percentile(latencies, 95)), 2),
            "mean": round(statistics.fmean(latencies), 2),
            "median_thread_cpu": round(statistics.median(cpu_ms), 2),
        },
    }


def machine() -> dict[str, Any]:
    import torch

    cpuinfo = Path("/proc/cpuinfo")
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
              if line.startswith("model name")] if cpuinfo.is_file() else []
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "cpu": models[0] if models else platform.machine(),
        "cpu_cores": os.cpu_count(),
        "load_average_1min_at_start": None if load is None else round(load, 2),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "python": platform.python_version(),
    }


def backend_configuration(name: str, settings: AppSettings) -> dict[str, Any]:
    safety = settings.safety
    if name == "classifier":
        manifest = json.loads((safety.classifier_path / "manifest.json").read_text(encoding="utf-8"))
        return {"embedder": manifest["embedder"], "thresholds": manifest["thresholds"],
                "threshold_overrides": {"request": safety.request_threshold, "response": safety.response_threshold}}
    model = safety.llama_guard_model if name == "llama_guard" else settings.model.name_or_path
    adapter = None if name == "llama_guard" or not settings.model.adapter_path else Path(settings.model.adapter_path)
    if adapter is not None and adapter.resolve().is_relative_to(PROJECT_ROOT):
        adapter = adapter.resolve().relative_to(PROJECT_ROOT)
    return {"model": model, "adapter": None if adapter is None else str(adapter),
            "max_new_tokens": settings.model.max_new_tokens, "fail_closed": safety.fail_closed}


def build_backend(name: str, settings: AppSettings) -> SafetyGuard:
    from agents.safety.factory import build_guard

    backend_settings = settings.model_copy(update={"safety": settings.safety.model_copy(update={"backend": name})})
    judge = None
    if name == "generator_judge":
        from agents.parts import load_generator

        judge = load_generator(settings.model).generate
    return build_guard(backend_settings, judge)


def evaluate(settings: AppSettings, backends: list[str], limit: int | None) -> dict[str, Any]:
    """Judge every test split with each backend; the report's per-split sizes say what each one saw."""
    import torch

    torch.set_num_threads(1)  # the latency target is per verdict on one CPU core
    data = SafetyData(settings.data_dir, settings.safety.seed)
    sizes = SplitSizes()
    stages = {"request": request_test_sets(data, sizes), "response": response_test_sets(data)}
    report: dict[str, Any] = {
        "command": "python -m lab.guard.evaluate " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "splits": {
            stage: {name: {"size": len(rows), "unsafe": sum(e.unsafe for e in rows), "what": SPLIT_NOTES[name]}
                    for name, rows in sets.items()}
            for stage, sets in stages.items()
        },
        "training_data": "harmful_train, a seeded 3,000-row sample of harmless_train, the ToxiGen train bucket, "
                         "the hh-rlhf train bucket, written `train` examples, and policy-model answers to "
                         "harmful_train / a harmless_train sample; thresholds from 5-fold out-of-fold scores "
                         "on that training data only",
        "anchor": ANCHOR,
        "backends": {},
    }
    for name in backends:
        guard = build_backend(name, settings)
        # The embedded classifier always sees every row; the model-based backends may be subsampled.
        sampled = {stage: sets if name == "classifier" else subsample(sets, limit, data.seed)
                   for stage, sets in stages.items()}
        results = {stage: stage_report(sets, *judge_all(guard, stage, sets)) for stage, sets in sampled.items()}
        request = results["request"]
        report["backends"][name] = {
            "configuration": backend_configuration(name, settings),
            # The headline: harmful vs. benign requests, all request test splits pooled.
            "f1": request["overall"]["f1"],
            "fpr": request["overall"]["fpr"],
            "median_latency_ms": request["latency_ms"]["median"],
            "median_thread_cpu_ms": request["latency_ms"]["median_thread_cpu"],
            "lookalike_fpr": request["per_split"]["written_test_lookalikes"]["fpr"],
            **results,
        }
    return report


def print_summary(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="safety guard, held-out splits")
    for column in ("backend", "stage", "F1", "precision", "recall", "FPR", "look-alike FPR", "median ms", "p95 ms",
                   "CPU ms"):
        table.add_column(column, justify="right" if column not in ("backend", "stage") else "left")
    for name, result in report["backends"].items():
        for stage in ("request", "response"):
            overall, latency = result[stage]["overall"], result[stage]["latency_ms"]
            lookalike = result[stage]["per_split"].get("written_test_lookalikes", {}).get("fpr")
            table.add_row(name, stage, f"{overall['f1']:.3f}", f"{overall['precision']:.3f}", f"{overall['recall']:.3f}",
                          f"{overall['fpr']:.3f}", "-" if lookalike is None else f"{lookalike:.3f}",
                          f"{latency['median']:.1f}", f"{latency['p95']:.1f}", f"{latency['median_thread_cpu']:.1f}")
    console = Console(width=120)
    console.print(table)
    anchor = report["anchor"]
    console.print(f"anchor: {anchor['model']} on {anchor['set']}: F1 {anchor['f1']}, FPR {anchor['fpr']}")


def main(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    report = evaluate(settings, args.backends, args.max_per_split)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print_summary(report)
    print(f"wrote {args.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = base_parser("python -m lab.guard.evaluate", __doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["classifier"],
                        choices=["classifier", "llama_guard", "generator_judge"])
    parser.add_argument("--max-per-split", type=int,
                        help="seeded subsample per split for llama_guard / generator_judge (classifier: all rows)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    return parser


if __name__ == "__main__":
    sys.exit(run(main, build_parser(), None))
