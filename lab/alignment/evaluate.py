"""`python -m lab.alignment.evaluate`: compare an aligned adapter with its base model.

On held-out HH pairs: preference accuracy and mean margin of the implicit reward, and the perplexity of the
chosen responses under base and adapter. On prompt sets: the share of harmful prompts refused and of benign
prompts wrongly refused, for base and adapter, decided by `lab.judge`. Writes metrics.json, report.md,
chart.png and answers.jsonl to --out (and the metrics to --results-json when given).

Example (the shipped adapter):
  python -m lab.alignment.evaluate --adapter outputs/ulma --pairs var/alignment/heldout_pairs.jsonl \\
    --harmful ../shared/data/safety-prompts/harmful_val.json \\
    --benign ../shared/data/safety-prompts/harmless_val.json:500 \\
    --train-data var/alignment/train.jsonl --out outputs/eval \\
    --results-json benchmarks/results/alignment_eval.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from configs.cli import add_common_arguments, configure_logging, run_cli
from configs.settings import PROJECT_ROOT, load_settings
from lab.judge import DEFAULT_LABELLED_SET

if TYPE_CHECKING:
    from lab.alignment.runner import EvalResult

DEFAULT_OUT = PROJECT_ROOT / "outputs" / "eval"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lab.alignment.evaluate",
        description="Evaluate a LoRA adapter against its base: preference metrics on held-out pairs, "
        "refusal of harmful prompts and over-refusal of benign ones.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_common_arguments(parser, config_help="YAML settings profile (model section)")
    parser.add_argument(
        "--base", help="base model: hub id, local folder or embedded:... (model.name_or_path)"
    )
    parser.add_argument("--adapter", help="LoRA adapter folder; without it only the base is measured")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="model.device")
    parser.add_argument("--pairs", help="held-out HH pairs, FILE[:N] (.jsonl/.jsonl.gz)")
    parser.add_argument(
        "--harmful",
        action="append",
        default=[],
        metavar="FILE[:N]",
        help="harmful prompts (.json safety-prompts, .csv AdvBench); repeatable",
    )
    parser.add_argument(
        "--benign",
        action="append",
        default=[],
        metavar="FILE[:N]",
        help="benign prompts (plain instructions), same formats; repeatable",
    )
    parser.add_argument(
        "--lookalike",
        action="append",
        default=[],
        metavar="FILE[:N]",
        help="safe prompts that sound harmful, same formats; repeatable",
    )
    parser.add_argument(
        "--train-data", help="the training file: its prompts are removed from the prompt sets"
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="folder for metrics, report, chart, answers"
    )
    parser.add_argument("--results-json", type=Path, help="also write the metrics here")
    parser.add_argument(
        "--no-base-answers",
        action="store_true",
        help="answer the prompt sets with the adapter only (the base's refusal rates are then not reported)",
    )
    parser.add_argument("--limit", type=int, help="at most N pairs and N prompts per set (quick runs)")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=64, help="prompts per generation batch")
    parser.add_argument("--repetition-penalty", type=float, help="default: model.repetition_penalty")
    parser.add_argument("--score-batch-size", type=int, default=16, help="rows per scoring forward pass")
    parser.add_argument("--max-length", type=int, default=1024, help="tokens per scored conversation")
    parser.add_argument("--beta", type=float, default=0.1, help="scale of the implicit reward")
    parser.add_argument(
        "--judge-guard", action="store_true", help="let the safety guard overrule the phrase judge"
    )
    parser.add_argument(
        "--labelled-set", type=Path, default=DEFAULT_LABELLED_SET, help="the judge's labelled answers"
    )
    parser.add_argument("--samples", type=int, default=5, help="sample answers per split in the report")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def write_outputs(result: EvalResult, out_dir: Path, results_json: Path | None, samples: int) -> None:
    from lab.alignment.report import render_markdown, write_answers, write_chart, write_json

    write_json(result.metrics, out_dir / "metrics.json")
    write_answers(result.answers, out_dir / "answers.jsonl")
    (out_dir / "report.md").write_text(
        render_markdown(result.metrics, result.answers, samples), encoding="utf-8"
    )
    write_chart(result.metrics, out_dir / "chart.png")
    if results_json:
        write_json(result.metrics, results_json)


def summary_lines(metrics: dict) -> list[str]:
    keys = [
        "base_harmful_refusal_rate",
        "harmful_refusal_rate",
        "base_benign_refusal_rate",
        "benign_refusal_rate",
        "base_lookalike_refusal_rate",
        "lookalike_refusal_rate",
        "base_refusal_ended_rate",
        "refusal_ended_rate",
        "base_chosen_ppl",
        "chosen_ppl",
        "preference_accuracy",
        "mean_reward_margin",
    ]
    lines = [f"{key:28s} {metrics[key]:.4f}" for key in keys if key in metrics]
    lines += [f"target {name}: {'met' if met else 'NOT met'}" for name, met in metrics["targets"].items()]
    return lines


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.debug)
    return run_cli(lambda: evaluate(args), debug=args.debug)


def evaluate(args: argparse.Namespace) -> int:
    # torch and transformers load only now, so --help and argument errors are instant.
    from lab.alignment.generation import GenerationSettings
    from lab.alignment.runner import EvalOptions, run_evaluation

    settings = load_settings(
        args.config,
        {
            "model.name_or_path": args.base,
            "model.adapter_path": args.adapter or "none",
            "model.device": args.device,
        },
    )
    options = EvalOptions(
        pairs=args.pairs,
        harmful=args.harmful,
        benign=args.benign,
        lookalike=args.lookalike,
        train_data=args.train_data,
        limit=args.limit,
        generation=GenerationSettings(
            max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size,
            repetition_penalty=args.repetition_penalty or settings.model.repetition_penalty,
            max_input_tokens=settings.model.max_input_tokens,
        ),
        score_batch_size=args.score_batch_size,
        max_length=args.max_length,
        beta=args.beta,
        judge_guard=args.judge_guard,
        base_answers=not args.no_base_answers,
        labelled_set=args.labelled_set,
        show_progress=not args.no_progress,
    )
    result = run_evaluation(settings, options)
    write_outputs(result, args.out, args.results_json, args.samples)
    print("\n".join(summary_lines(result.metrics)))
    print(f"wrote {args.out}/metrics.json, report.md, chart.png, answers.jsonl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
