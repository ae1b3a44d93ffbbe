"""The request guard's threshold sweep: figures recomputed from the scores, the best rows and the chart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from lab.guard.threshold_sweep import plot_threshold_sweep, threshold_sweep
from lab.guard.training_data import Example


def examples(labels: list[bool], codes: list[str] | None = None) -> list[Example]:
    return [Example(f"text {i}", unsafe, (codes[i],) if codes else ()) for i, unsafe in enumerate(labels)]


SETS = {
    # unsafe at 0.9 and 0.4, safe at 0.2: a cut above 0.4 loses one harmful row
    "harmful_and_plain": examples([True, True, False]),
    # S1 scores 0.8, S2 0.3: recall per category, then the mean
    "ailuminate/demo_en": examples([True, True, True], ["S1", "S1", "S2"]),
    "coconot/contrast": examples([False, False, False, False]),
    "technical_questions": examples([False, False]),
    "hatecheck/test_suite:calibration": examples([False]),
}
SCORES = {
    "harmful_and_plain": np.array([0.9, 0.4, 0.2]),
    "ailuminate/demo_en": np.array([0.8, 0.8, 0.3]),
    "coconot/contrast": np.array([0.1, 0.1, 0.1, 0.35]),
    "technical_questions": np.array([0.05, 0.05]),
    "hatecheck/test_suite:calibration": np.array([0.99]),  # a calibration set: in no figure
}


def sweep() -> dict:
    return threshold_sweep(SETS, SCORES, unseen=[n for n in SETS if not n.endswith(":calibration")],
                           lookalikes=["coconot/contrast"], technical="technical_questions",
                           ailuminate="ailuminate/demo_en", in_use=0.5)


def row_at(result: dict, threshold: float) -> dict:
    return next(r for r in result["rows"] if r["threshold"] == threshold)


def test_each_row_recomputes_the_figures_at_its_threshold() -> None:
    result = sweep()
    at_half = row_at(result, 0.5)  # the threshold in use is a row of its own
    # unseen: unsafe 0.9 0.4 | 0.8 0.8 0.3 -> 3 of 5 flagged; safe 0.2, four look-alikes, two technical: none flagged
    assert (at_half["unseen_precision"], at_half["unseen_recall"]) == (1.0, 0.6)
    assert at_half["lookalike_fpr"] == 0.0 and at_half["technical_fpr"] == 0.0
    assert at_half["ailuminate_mean_recall"] == 0.5  # S1 1.0, S2 0.0
    at_quarter = row_at(result, 0.25)
    assert at_quarter["unseen_recall"] == 1.0 and at_quarter["lookalike_fpr"] == 0.25
    assert at_quarter["ailuminate_mean_recall"] == 1.0


def test_the_best_rows_respect_the_false_positive_targets() -> None:
    result = sweep()
    # cuts in (0.2, 0.3] flag all five harmful rows and the look-alike at 0.35: F1 10/11; the first of them wins
    assert (result["best_unseen_f1"]["threshold"], result["best_unseen_f1"]["unseen_f1"]) == (0.225, 0.9091)
    # a look-alike false-positive rate within 5% needs a cut above 0.35: four of five harmful rows, F1 8/9
    within = result["best_unseen_f1_within_fpr_targets"]
    assert (within["threshold"], within["unseen_f1"], within["lookalike_fpr"]) == (0.375, 0.8889, 0.0)
    assert result["threshold_in_use"] == 0.5


def test_the_chart_is_a_png(tmp_path: Path) -> None:
    path = plot_threshold_sweep(sweep(), tmp_path / "charts" / "sweep.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 500
