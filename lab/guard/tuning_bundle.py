"""Everything the encoder tuning needs from the data, in one small compressed file that travels to a GPU.

    python -m lab.guard.tuning_bundle [--data-dir ../shared/data] [--output var/guard/tuning_bundle.json.xz]

The GPU machine has neither ../shared/data nor this project's settings stack, and what travels there is
capped, so the splits are computed here (lab.guard.splits, the same functions training and evaluation use)
and written as distinct texts plus index lists: the request training set (each row with its loss weight
and, for safety-extra rows, its source), every request validation set by name, the calibration set names,
each leave-one-source-out fold's test rows, the answer-stage training rows (request, answer, label), and the
texts of the answer-stage validation sets (embedded on the GPU too).
"""

from __future__ import annotations

import argparse
import json
import lzma
import sys
from pathlib import Path
from typing import Any

from agents.safety.verdict import HAZARD_CATEGORIES
from configs.settings import PROJECT_ROOT
from lab.guard.cli import base_parser, run, settings_from
from lab.guard.sources import MIX_FILE, Mix, load_mix
from lab.guard.splits import (
    calibration_sets,
    leave_one_out_set,
    request_training_set,
    request_validation_sets,
    response_training_set,
    response_validation_sets,
)
from lab.guard.training_data import Example, SafetyData, SplitSizes

DEFAULT_BUNDLE = PROJECT_ROOT / "var" / "guard" / "tuning_bundle.json.xz"
# The hand-written requests (look-alikes, unsafe requests worded like them, technical questions) are the hard
# cases; they weigh 5x in the loss, as they did for the frozen-embedding heads (lab.guard.train history).
WRITTEN_WEIGHT = 5.0


def loss_weight(example: Example) -> float:
    return WRITTEN_WEIGHT if example.source.startswith("written/") else 1.0


def extra_source(example: Example) -> str:
    """The safety-extra source of a row ("hatecheck"), or "" for the older sets."""
    return example.source.split("/")[1] if example.source.startswith("extra/") else ""


class TextTable:
    """Distinct texts, each with one index; rows refer to texts by index."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self._index: dict[str, int] = {}

    def id(self, text: str) -> int:
        if text not in self._index:
            self._index[text] = len(self.texts)
            self.texts.append(text)
        return self._index[text]


def row_set(table: TextTable, rows: list[Example], categories: list[str]) -> dict[str, list]:
    return {
        "text": [table.id(e.request) for e in rows],
        "unsafe": [int(e.unsafe) for e in rows],
        "category": [categories.index(e.categories[0]) if e.unsafe and e.categories else -1 for e in rows],
        "weight": [loss_weight(e) for e in rows],
        "source": [extra_source(e) for e in rows],
    }


def build_bundle(data: SafetyData, mix: Mix, sizes: SplitSizes) -> dict[str, Any]:
    categories = list(HAZARD_CATEGORIES)
    table = TextTable()
    training = request_training_set(data, mix, sizes)
    sets = {"train": row_set(table, training, categories)}
    for name, rows in request_validation_sets(data, mix, sizes).items():
        sets[f"val/{name}"] = row_set(table, rows, categories)
    for source in mix.leave_one_out:
        fold_training, test = leave_one_out_set(data, mix, sizes, source)
        # The tuning script trains each fold on the training rows of other sources: check that is this fold's mix.
        if fold_training != [e for e in training if extra_source(e) != source]:
            raise AssertionError(f"leave-one-out training set for {source} is not the mix without its rows")
        sets[f"loo/{source}"] = row_set(table, test, categories)
    responses = response_training_set(data, mix)
    sets["responses"] = {**row_set(table, responses, categories),
                         "answer": [table.id(e.answer or "") for e in responses]}
    for example in [e for rows in response_validation_sets(data, mix).values() for e in rows]:
        table.id(example.request)
        table.id(example.answer or "")
    return {
        "format": 1,
        "seed": data.seed,
        "categories": categories,
        "calibration": [f"val/{name}" for name in calibration_sets(mix, "request")],
        "leave_one_out": list(mix.leave_one_out),
        "texts": table.texts,
        "sets": sets,
    }


def write_bundle(bundle: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with lzma.open(path, "wt", encoding="utf-8", preset=9) as handle:
        json.dump(bundle, handle, separators=(",", ":"))


def main(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    data = SafetyData(settings.data_dir, settings.safety.seed)
    bundle = build_bundle(data, load_mix(args.mix), SplitSizes())
    write_bundle(bundle, args.output)
    sizes = {name: len(rows["text"]) for name, rows in bundle["sets"].items()}
    folds = ", ".join(f"{source} ({sizes['loo/' + source]})" for source in bundle["leave_one_out"])
    validation = sum(size for name, size in sizes.items() if name.startswith("val/"))
    print(f"{len(bundle['texts'])} distinct texts; training rows {sizes['train']}; validation rows {validation}; "
          f"leave-one-out test rows: {folds}")
    print(f"wrote {args.output} ({args.output.stat().st_size / 1e6:.2f} MB)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = base_parser("python -m lab.guard.tuning_bundle", __doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_BUNDLE, help="the .json.xz to write")
    parser.add_argument("--mix", type=Path, default=MIX_FILE, help="which sources train and which validate")
    return parser


if __name__ == "__main__":
    sys.exit(run(main, build_parser(), None))
