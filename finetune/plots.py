"""Training curves as a PNG: loss (train and held-out) and implicit rewards (positives, negatives, margin)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on training machines
import matplotlib.pyplot as plt

CURVES_FILE = "training_curves.png"


def _series(entries: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    points = [(entry["step"], entry[key]) for entry in entries if key in entry]
    return [step for step, _ in points], [value for _, value in points]


def plot_training_curves(entries: list[dict[str, Any]], path: Path) -> Path:
    """Draw the metrics logged by `JsonlMetricsCallback` into `path`; returns it."""
    figure, (loss_axis, reward_axis) = plt.subplots(1, 2, figsize=(12, 4.5))
    for key, label in (("loss", "train loss"), ("eval_loss", "held-out loss")):
        steps, values = _series(entries, key)
        if steps:
            loss_axis.plot(steps, values, marker="o" if key == "eval_loss" else None, label=label)
    loss_axis.set(xlabel="optimizer step", ylabel="loss", title="Loss")
    for key, label in (
        ("rewards/positive", "positives (train)"),
        ("rewards/negative", "negatives (train)"),
        ("rewards/margin", "margin (train)"),
        ("eval_reward_margin", "margin (held-out)"),
    ):
        steps, values = _series(entries, key)
        if steps:
            reward_axis.plot(steps, values, marker="o" if key.startswith("eval") else None, label=label)
    reward_axis.axhline(0.0, color="grey", linewidth=0.5)
    reward_axis.set(xlabel="optimizer step", ylabel="beta * log(pi / pi_ref)", title="Implicit rewards")
    for axis in (loss_axis, reward_axis):
        if axis.get_legend_handles_labels()[0]:
            axis.legend()
        axis.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
