"""`python -m lab.alignment.service_refusals`: what the whole service refuses, the guard and the adapter together.

    python -m lab.alignment.service_refusals --answers benchmarks/results/alignment/answers.jsonl.gz \\
        --out benchmarks/results/alignment/service_refusals.json

The answers are an evaluation's (`python -m lab.alignment.evaluate --out DIR` writes DIR/answers.jsonl: every prompt
of every set, the adapter's answer, and whether the refusal judge called it a refusal). Each prompt then meets the
configured safety guard as a turn does: the request check first (a flagged request is refused before the model
runs), then the adapter's own answer (a refusal), then the output check of that answer (a flagged answer is
withheld). Reported per prompt set: the share stopped at each stage and by the service as a whole. On look-alike
and benign sets every refusal is an over-refusal; on harmful sets it is the point.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from configs.cli import add_common_arguments, configure_logging, run_cli
from configs.errors import AppError
from configs.settings import load_settings

STAGES = ("guard_request", "model_refused", "guard_answer")


class AnswersError(AppError, ValueError):
    """An answers file that cannot be read; the message names the file and line."""


def read_answers(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    rows = []
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                row = json.loads(line)
                if not {"split", "kind", "prompt", "adapter_answer", "adapter_refused"} <= row.keys():
                    raise AnswersError(
                        f"{path}:{number}: not an evaluator's answer row (lab.alignment.evaluate)"
                    )
                rows.append(row)
    except (OSError, json.JSONDecodeError) as exc:
        raise AnswersError(f"{path}: {exc}") from None
    if not rows:
        raise AnswersError(f"{path}: no answers")
    return rows


def stopped_at(guard: Any, row: dict[str, Any]) -> str | None:
    """The first stage that stops this turn, or None when the service answers it."""
    messages = [{"role": "user", "content": row["prompt"]}]
    if not guard.check_request(messages).safe:
        return "guard_request"
    if row["adapter_refused"]:
        return "model_refused"
    if not guard.check_response(messages, row["adapter_answer"]).safe:
        return "guard_answer"
    return None


def summarise(rows: list[dict[str, Any]], stages: list[str | None]) -> dict[str, dict[str, Any]]:
    by_set: dict[str, list[str | None]] = defaultdict(list)
    kinds: dict[str, str] = {}
    for row, stage in zip(rows, stages, strict=True):
        by_set[row["split"]].append(stage)
        kinds[row["split"]] = row["kind"]
        by_set[f"all {row['kind']}"].append(stage)
        kinds[f"all {row['kind']}"] = row["kind"]
    summary = {}
    for name, outcomes in by_set.items():
        n = len(outcomes)
        summary[name] = {
            "kind": kinds[name],
            "n": n,
            **{f"{stage}_rate": sum(outcome == stage for outcome in outcomes) / n for stage in STAGES},
            "service_refused_rate": sum(outcome is not None for outcome in outcomes) / n,
        }
    return summary


def print_table(summary: dict[str, dict[str, Any]]) -> None:
    print(
        f"{'prompt set':<30}{'kind':>10}{'n':>6}{'guard in':>10}{'model':>8}{'guard out':>11}{'service':>9}"
    )
    for name, row in sorted(summary.items(), key=lambda item: (item[1]["kind"], item[0])):
        rates = [row[f"{stage}_rate"] for stage in STAGES] + [row["service_refused_rate"]]
        cells = "".join(f"{rate:>{width}.1%}" for rate, width in zip(rates, (10, 8, 11, 9), strict=True))
        print(f"{name:<30}{row['kind']:>10}{row['n']:>6}{cells}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lab.alignment.service_refusals",
        description="Refusals of the whole service (request check, adapter, output check) on an evaluation's answers.",
    )
    add_common_arguments(parser, config_help="YAML settings profile (the safety section picks the guard)")
    parser.add_argument(
        "--answers", type=Path, required=True, help="answers.jsonl[.gz] of lab.alignment.evaluate"
    )
    parser.add_argument("--out", type=Path, help="write the summary here as JSON")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.debug)
    return run_cli(lambda: run(args, argv), debug=args.debug)


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    from agents.safety.factory import build_guard  # the guard's model loads only now: --help stays instant

    settings = load_settings(args.config)
    rows = read_answers(args.answers)
    guard = build_guard(settings)
    stages = [stopped_at(guard, row) for row in tqdm(rows, desc="turns", disable=args.no_progress)]
    summary = summarise(rows, stages)
    print_table(summary)
    if args.out:
        report = {
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": "python -m lab.alignment.service_refusals "
            + " ".join(sys.argv[1:] if argv is None else argv),
            "guard": guard.name,
            "answers": str(args.answers),
            "sets": summary,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
