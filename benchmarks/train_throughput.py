"""ULMA training throughput: the standard QLoRA stack, run as a competent user runs it, vs. the project's trainer.

    python -m benchmarks.train_throughput                      # Llama-3.1-8B shape, needs a CUDA GPU
    python -m benchmarks.train_throughput --shape tiny --device cpu --rows 24 --warmup 1 --steps 1 \\
        --baseline-sizes 2 4 --variants 1024:on                # smoke test

Rows are real HH pairs (../shared/data/hh-rlhf) tokenized by the project's chat-template code, so the sequence
lengths are the real ones; the model has the Llama-3.1-8B shape with random weights (speed does not depend on
values), NF4 + LoRA r16 on all linear layers. Effective tokens are the non-padding tokens of the timed steps.

Every configuration runs in its own process (benchmarks/throughput_runs.py says what each times): first the
fair baseline's batch size is searched (the largest that keeps its peak under --max-peak-gb), then every
configuration runs once in the given order; then the fair baseline and the fastest project run under the cap
run again in reversed order, --repeats times in all, alternating; each row reports the median of its runs.
The naive baseline (the project's earlier one: unsorted batches of 8 rows, a reference forward every step) is
kept as a second, labelled row.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.throughput_runs import Variant, run_job
from configs.settings import EMBEDDED_GENERATOR, PROJECT_ROOT, SHARED_DATA_DIR, ModelSettings
from finetune.data import DataReport, load_pairs, pointwise_rows, tokenize_rows
from finetune.modeling import load_tokenizer

logger = logging.getLogger(__name__)

DEFAULT_DATA = str(SHARED_DATA_DIR / "hh-rlhf" / "harmless-base-test.jsonl.gz")
RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "train_throughput.json"
FAIR, NAIVE = "fair baseline", "naive baseline"


def benchmark_rows(tokenizer: Any, data: str, n_rows: int, max_length: int) -> list[dict]:
    """Point-wise rows (chosen score 1, rejected score 0) of real HH pairs, tokenized by the project."""
    report = DataReport()
    pairs = load_pairs(data, report=report)[: (n_rows + 1) // 2 + 64]
    rows = tokenize_rows(tokenizer, pointwise_rows(pairs, report), max_length, report)[:n_rows]
    return [{key: row[key] for key in ("input_ids", "labels", "score", "pair_id")} for row in rows]


class Runner:
    """Starts each job in a fresh process, by default forked from a server that has already imported torch and
    the project (no CUDA in it), so a run pays neither the imports nor another run's allocator state."""

    def __init__(
        self, work_dir: Path, common: dict[str, Any], start_method: str, deadline: float | None
    ) -> None:
        self.deadline = deadline  # perf_counter time after which no run starts
        self.work_dir = work_dir
        self.common = common
        # torch.cuda.is_available() through NVML: the cudart query would forbid CUDA in processes forked later.
        os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
        self.context = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            self.context.set_forkserver_preload(["benchmarks.throughput_runs"])
        self.count = 0

    def __call__(self, kind: str, name: str, *, budgeted: bool = True, **settings: Any) -> dict[str, Any]:
        if budgeted and self.deadline is not None and time.perf_counter() > self.deadline:
            logger.warning("%s skipped: past --time-budget-s", name)
            return {"error": "skipped: past --time-budget-s"}
        self.count += 1
        result_path = self.work_dir / f"result-{self.count}.json"
        job = {**self.common, **settings, "kind": kind, "name": name}
        job["output_dir"] = str(self.work_dir / f"run-{self.count}")
        logger.info("run %d: %s", self.count, name)
        start = time.perf_counter()
        process = self.context.Process(target=run_job, args=(job, str(result_path)))
        process.start()
        process.join()
        if not result_path.is_file():
            return {"error": f"process ended with exit code {process.exitcode} and no result"}
        result = json.loads(result_path.read_text())
        result["process_seconds"] = round(time.perf_counter() - start, 1)
        if "effective_tokens" in result:
            result["effective_tokens_per_s"] = result["effective_tokens"] / result["seconds"]
            logger.info(
                "%s: %.0f effective tokens/s, peak %s GB",
                name,
                result["effective_tokens_per_s"],
                result["peak_gb"],
            )
        return result


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median throughput over a configuration's runs, the largest peak, and each run as measured."""
    good = [run for run in runs if "error" not in run]
    if not good:
        return {"error": runs[0]["error"], "runs": runs}
    rates = [run["effective_tokens_per_s"] for run in good]
    # Without the one-off reference pass's charge: an upper bound that grants the run a free reference.
    step_rates = [run["effective_tokens"] / run["step_seconds"] for run in good]
    peaks = [run["peak_gb"] for run in good if run["peak_gb"] is not None]
    detail = {k: v for k, v in good[0].items() if k not in ("losses", "process_seconds")}
    return {
        **detail,
        "effective_tokens_per_s": round(statistics.median(rates), 1),
        "peak_gb": max(peaks) if peaks else None,
        "repeats": len(good),
        "runs_tokens_per_s": [round(rate, 1) for rate in rates],
        "steps_only_tokens_per_s": round(statistics.median(step_rates), 1),
        "first_losses": good[0]["losses"][:3],
    }


def fits(summary: dict[str, Any], cap_gb: float) -> bool:
    return "error" not in summary and (summary["peak_gb"] is None or summary["peak_gb"] <= cap_gb)


def print_table(rows: dict[str, dict[str, Any]], cap_gb: float) -> None:
    from rich.console import Console
    from rich.table import Table

    fair = rows[FAIR].get("effective_tokens_per_s")
    table = Table(
        title=f"ULMA training throughput (effective = non-padding tokens; memory cap {cap_gb:g} GB)"
    )
    for column in ("run", "runs", "effective tokens/s (median)", "peak GB", "vs fair baseline"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for name, summary in rows.items():
        if "error" in summary:
            table.add_row(name, "0", summary["error"][:60], "-", "-")
            continue
        rate = summary["effective_tokens_per_s"]
        table.add_row(
            name,
            str(summary["repeats"]),
            f"{rate:,.0f}",
            "-" if summary["peak_gb"] is None else f"{summary['peak_gb']:.1f}",
            f"{rate / fair:.2f}x" if fair else "-",
        )
    Console().print(table)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=["llama31-8b", "tiny"], default="llama31-8b")
    parser.add_argument("--model-dir", type=Path, default=Path("/dev/shm/bench-model"))
    parser.add_argument(
        "--data", default=DEFAULT_DATA, help="HH pairs (.jsonl.gz) whose lengths the rows follow"
    )
    parser.add_argument("--rows", type=int, default=2200, help="point-wise rows tokenized for the run")
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument(
        "--tokenizer",
        default=EMBEDDED_GENERATOR,
        help="tokenizer that turns HH text into the rows' token ids",
    )
    parser.add_argument(
        "--baseline-sizes",
        type=int,
        nargs="+",
        default=[4, 8, 12, 16, 24, 32, 48],
        help="fair baseline rows per batch to try",
    )
    parser.add_argument("--naive-batch", type=int, default=8, help="rows per unsorted naive-baseline batch")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["32768:on", "16384:on", "8192:off"],
        help="project runs as TOKENS_PER_MICRO_BATCH:on|off[:OPTION...] (gradient checkpointing; options: the "
        "additions packed, liger, fa4 and the ablations fp32, allref, stepref, fulllogits, maskpad; see Variant)",
    )
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument(
        "--repeats", type=int, default=2, help="runs of the two headline rows, order alternated"
    )
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--max-peak-gb", type=float, default=24.0, help="the memory cap both sides must fit")
    parser.add_argument(
        "--time-budget-s",
        type=float,
        help="start no configuration's first run after this many seconds (a lent GPU's time limit); the "
        "headline pair's repeats still run",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        variants = [Variant.parse(text) for text in args.variants]
    except ValueError as exc:
        parser.error(str(exc))
    started = time.perf_counter()

    tokenizer = load_tokenizer(ModelSettings(name_or_path=args.tokenizer))
    work_dir = Path(tempfile.mkdtemp(prefix="train-throughput-"))
    rows_file = work_dir / "rows.json"
    rows = benchmark_rows(tokenizer, args.data, args.rows, args.max_length)
    rows_file.write_text(json.dumps(rows))
    common = {
        "device": args.device,
        "model_dir": str(args.model_dir),
        "rows_file": str(rows_file),
        "warmup": args.warmup,
        "steps": args.steps,
        "beta": args.beta,
        "seed": args.seed,
        "cap_gb": args.max_peak_gb,
    }
    deadline = None if args.time_budget_s is None else started + args.time_budget_s
    run = Runner(work_dir, common, "forkserver", deadline)
    prepared = run("prepare", "prepare", shape=args.shape, tokenizer=args.tokenizer)
    if "fork" in prepared.get("error", ""):  # CUDA refused in a forked process: fresh interpreters instead
        run = Runner(work_dir, common, "spawn", deadline)
        prepared = run("prepare", "prepare", shape=args.shape, tokenizer=args.tokenizer)
    if "error" in prepared:
        raise SystemExit(f"could not prepare the model: {prepared['error']}")
    search = run("search", "fair baseline batch-size search", sizes=args.baseline_sizes)
    if search.get("batch_rows") is None:
        raise SystemExit(f"no fair-baseline batch size fits {args.max_peak_gb} GB: {search}")

    jobs: dict[str, tuple[str, dict[str, Any]]] = {
        FAIR: ("fair", {"batch_rows": search["batch_rows"]}),
        **{v.name: ("project", {"variant": text}) for v, text in zip(variants, args.variants, strict=True)},
        NAIVE: ("naive", {"batch_rows": args.naive_batch}),
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in jobs}
    order = list(jobs)
    for name in order:
        runs[name].append(run(jobs[name][0], name, **jobs[name][1]))

    def best_project(cap: float | None) -> str | None:
        candidates = [
            v.name
            for v in variants
            if not v.is_ablation and fits(summarise(runs[v.name]), cap if cap is not None else float("inf"))
        ]
        return max(candidates, key=lambda n: summarise(runs[n])["effective_tokens_per_s"], default=None)

    headline = best_project(args.max_peak_gb)
    pair = [FAIR, headline] if headline else [FAIR]
    for repeat in range(1, args.repeats):
        for name in pair if repeat % 2 == 0 else reversed(pair):
            order.append(name)
            # Past the time budget too: without its repeats the headline ratio would rest on one run each.
            runs[name].append(run(jobs[name][0], name, budgeted=False, **jobs[name][1]))

    summaries = {name: summarise(runs[name]) for name in jobs}
    print_table(summaries, args.max_peak_gb)
    fair = summaries[FAIR]
    uncapped = best_project(None)
    result = {
        "device": prepared["device"],
        "shape": args.shape,
        "data": Path(args.data).name,
        "rows": len(rows),
        "max_peak_gb": args.max_peak_gb,
        "repeats": args.repeats,
        "baseline": fair,
        "naive_baseline": summaries[NAIVE],
        "project": summaries[headline] if headline else None,
        "project_name": headline,
        "ratio": _ratio(summaries.get(headline), fair),
        "ratio_vs_naive": _ratio(summaries.get(headline), summaries[NAIVE]),
        "project_without_cap": summaries[uncapped] if uncapped else None,
        "project_without_cap_name": uncapped,
        "project_variants": {v.name: summaries[v.name] for v in variants},
        "baseline_search": search,
        "run_order": order,
        # The ULMA loss of the first rows before any step: the standard path (float32-upcast frozen weights, full
        # logits) vs. the project's (bf16, response-only logits, causal mask only), same adapter weights.
        "same_batch_loss": _loss_check(fair, summaries.get(headline)),
        "versions": prepared["versions"],
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "command": "python -m benchmarks.train_throughput "
        + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    logger.info("wrote %s (ratio %s vs the fair baseline)", args.out, result["ratio"])


def _ratio(project: dict[str, Any] | None, baseline: dict[str, Any]) -> float | None:
    if not project or "error" in project or "error" in baseline:
        return None
    return round(project["effective_tokens_per_s"] / baseline["effective_tokens_per_s"], 3)


def _loss_check(fair: dict[str, Any], project: dict[str, Any] | None) -> dict[str, float | None]:
    if not project or "error" in project or "error" in fair:
        return {"baseline": fair.get("check_loss"), "project": None, "relative_difference": None}
    base, mine = fair["check_loss"], project["check_loss"]
    return {"baseline": base, "project": mine, "relative_difference": round(abs(mine - base) / base, 6)}


if __name__ == "__main__":
    main()
