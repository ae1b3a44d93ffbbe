"""Compare encoder-tuning recipes on their leave-one-source-out folds: each held-out source's F1 and false-positive
rate, and every fold pooled, one row per recipe.

    python -m lab.guard.compare_folds --recipe NAME REPORT [REPORT ...] [--recipe ...] [--out FILE]

A REPORT is the report.json of a `lab.guard.tune_encoder --folds-only` run. A recipe's reports must share one
bundle and one recipe, every recipe the same bundle, and no source may appear twice in a recipe: rows from other
data or other recipes would not compare.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from configs.cli import configure_logging, run_cli
from configs.errors import AppError
from lab.guard.add_folds import read_json
from lab.guard.metrics import pooled_metrics


class FoldComparisonError(AppError, ValueError):
    """Reports that do not measure one recipe on one bundle; the message says which."""


def recipe_folds(name: str, reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One recipe's folds from its reports, checked to share a bundle and a recipe."""
    bundles = {report.get("bundle_sha256") for report in reports}
    recipes = {json.dumps(report.get("recipe"), sort_keys=True) for report in reports}
    if len(bundles) != 1 or len(recipes) != 1:
        raise FoldComparisonError(f"recipe {name}: its reports differ in bundle or recipe")
    folds: dict[str, Any] = {}
    for report in reports:
        for source, fold in (report.get("leave_one_out") or {}).items():
            if source in folds:
                raise FoldComparisonError(f"recipe {name}: source {source} is held out in two reports")
            folds[source] = fold
    if not folds:
        raise FoldComparisonError(f"recipe {name}: its reports hold no leave-one-out fold")
    return {
        "recipe": reports[0]["recipe"],
        "bundle_sha256": bundles.pop(),
        "runs": [{key: report.get(key) for key in ("command", "device", "seconds")} for report in reports],
        "folds": folds,
        "pooled": pooled_metrics(list(folds.values())),
        "mean_f1": round(sum(fold["f1"] for fold in folds.values()) / len(folds), 4),
    }


def compare(recipes: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    compared = {name: recipe_folds(name, reports) for name, reports in recipes.items()}
    if len({entry["bundle_sha256"] for entry in compared.values()}) != 1:
        raise FoldComparisonError("the recipes were tuned on different bundles")
    return compared


def print_table(compared: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    sources = sorted({source for entry in compared.values() for source in entry["folds"]})
    table = Table(title="leave-one-source-out: F1 (FPR) per held-out source")
    for column in ["recipe", *sources, "pooled F1", "mean F1"]:
        table.add_column(column, justify="right")
    for name, entry in compared.items():
        cells = [f"{entry['folds'][s]['f1']:.3f} ({entry['folds'][s]['fpr']:.3f})" if s in entry["folds"] else "-"
                 for s in sources]
        table.add_row(name, *cells, f"{entry['pooled']['f1']:.3f}", f"{entry['mean_f1']:.3f}")
    Console().print(table)


def main(args: argparse.Namespace) -> int:
    recipes: dict[str, list[dict[str, Any]]] = {}
    for name, *paths in args.recipe:
        if not paths:
            raise FoldComparisonError(f"recipe {name}: name at least one report.json")
        recipes.setdefault(name, []).extend(read_json(Path(path)) for path in paths)
    compared = compare(recipes)
    print_table(compared)
    if args.out:
        result = {"command": "python -m lab.guard.compare_folds " + " ".join(sys.argv[1:]),
                  "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "recipes": compared}
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lab.guard.compare_folds", description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", nargs="+", action="append", required=True, metavar=("NAME", "REPORT"),
                        help="a recipe's name, then its fold reports (repeatable)")
    parser.add_argument("--out", type=Path, help="write the comparison here as JSON")
    parser.add_argument("--debug", action="store_true", help="debug logs, and tracebacks on errors")
    return parser


if __name__ == "__main__":
    parsed = build_parser().parse_args()
    configure_logging(parsed.debug)
    sys.exit(run_cli(lambda: main(parsed), debug=parsed.debug))
