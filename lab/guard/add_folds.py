"""Add leave-one-source-out folds, trained apart from the shipped encoder, to its manifest.

    python -m lab.guard.add_folds --report DIR/report.json [--report ...] [--weights agents/safety/weights]

A fold retrains the shipped recipe without one source and tests it on all of that source's rows; folds are
independent, so they can run as separate `lab.guard.tune_encoder --folds-only --leave-one-out SOURCE`
processes side by side on one GPU. A report is accepted only when it was tuned on the bundle the weights were
trained from, with the shipped recipe and calibration bound, and adds no fold the manifest already holds;
each run's command, device and versions are kept beside its folds (`encoder_tuning.fold_runs`), and
`lab.guard.evaluate` reports every fold.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from agents.safety.heads import MANIFEST_FILE
from configs.cli import add_common_arguments, configure_logging, run_cli
from configs.errors import AppError
from configs.settings import load_settings
from lab.guard.tune_encoder import Recipe, fold_line


class FoldReportError(AppError, ValueError):
    """A fold report that does not belong to the shipped weights; the message says which check failed."""


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise FoldReportError(f"{path}: not a readable JSON file ({error})") from error


def checked_folds(report: dict[str, Any], tuning: dict[str, Any], bundle_sha256: str, name: str) -> dict[str, Any]:
    """The report's folds, after checking they measure the shipped recipe on the shipped bundle."""
    if report.get("bundle_sha256") != bundle_sha256:
        raise FoldReportError(f"{name}: tuned on bundle {report.get('bundle_sha256')}, the weights on {bundle_sha256}")
    if "recipe" not in report or Recipe(**report["recipe"]) != Recipe(**tuning["kept"]["recipe"]):
        raise FoldReportError(f"{name}: recipe {report.get('recipe')} is not the shipped {tuning['kept']['recipe']}")
    if report.get("max_fpr") != tuning["max_fpr"]:
        raise FoldReportError(f"{name}: calibrated at FPR <= {report.get('max_fpr')}, the weights at {tuning['max_fpr']}")
    folds = report.get("leave_one_out") or {}
    if not folds:
        raise FoldReportError(f"{name}: holds no leave-one-out fold")
    again = sorted(set(folds) & set(tuning["leave_one_out"]))
    if again:
        raise FoldReportError(f"{name}: the manifest already holds the fold(s) {', '.join(again)}")
    return folds


def add_folds(weights: Path, reports: list[Path]) -> dict[str, Any]:
    """Every report's folds into the manifest at `weights`, all or none; returns the updated manifest."""
    manifest_path = weights / MANIFEST_FILE
    manifest = read_json(manifest_path)
    tuning = manifest["encoder_tuning"]
    for path in reports:
        report = read_json(path)
        folds = checked_folds(report, tuning, manifest["bundle_sha256"], str(path))
        tuning["leave_one_out"].update(folds)
        tuning.setdefault("fold_runs", []).append(
            {key: report[key] for key in ("command", "device", "versions", "seconds")} | {"folds": sorted(folds)})
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def main(args: argparse.Namespace) -> int:
    weights = args.weights or load_settings(args.config).safety.classifier_path
    tuning = add_folds(weights, args.report)["encoder_tuning"]
    for source, fold in tuning["leave_one_out"].items():
        print(fold_line(source, fold))
    print(f"wrote {weights / MANIFEST_FILE}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lab.guard.add_folds", description=__doc__.splitlines()[0])
    add_common_arguments(parser)
    parser.add_argument("--report", type=Path, nargs="+", required=True,
                        help="report.json of a lab.guard.tune_encoder --folds-only run")
    parser.add_argument("--weights", type=Path, help="the guard's weights folder (default: safety.classifier_path)")
    return parser


if __name__ == "__main__":
    parsed = build_parser().parse_args()
    configure_logging(parsed.debug)
    sys.exit(run_cli(lambda: main(parsed), debug=parsed.debug))
