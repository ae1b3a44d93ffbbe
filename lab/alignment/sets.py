"""`python -m lab.alignment.sets`: prompt sets that resemble the world, split by fold into train, val and test.

configs/finetune/world_sets.yaml names each set: a source file, its kind (harmful, lookalike, benign), row
filters, and which of ten folds (the row's `fold`, else md5 of the normalised prompt mod 10) go to training,
validation and test. The builder writes `OUT/<split>/<split>_<set>.json` (split: train, val, test) in the safety-prompts format
(`[{"instruction", "category"}]`) that `lab.alignment.evaluate`, `lab.alignment.sweep` and
`lab.alignment.data --lookalikes / --harmful-extra` read, and `OUT/manifest.json` with every file's size and sha256.

    python -m lab.alignment.sets --out var/alignment/sets
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from configs.cli import configure_logging, run_cli
from configs.settings import CONFIG_DIR, PROJECT_ROOT, SHARED_DATA_DIR, ConfigError
from finetune.data import DataError
from lab.alignment.prompts import (
    CSV_PROMPT_COLUMNS,
    normalise_prompt,
    read_json_prompt_records,
    record_prompt,
)

DEFAULT_CONFIG = CONFIG_DIR / "finetune" / "world_sets.yaml"
DEFAULT_OUT = PROJECT_ROOT / "var" / "alignment" / "sets"
SPLITS = ("train", "val", "test")
WRITTEN = "written:"  # a file of the repository: a YAML mapping of group -> list of prompts
Kind = Literal["harmful", "lookalike", "benign"]


@dataclass(frozen=True)
class SetSpec:
    name: str
    file: str
    kind: Kind
    where: dict[str, Any] = field(default_factory=dict)
    folds: dict[str, frozenset[int]] = field(default_factory=dict)  # split -> folds

    @classmethod
    def parse(cls, name: str, raw: dict[str, Any]) -> SetSpec:
        if raw.get("kind") not in ("harmful", "lookalike", "benign"):
            raise ConfigError(f"set {name}: kind must be harmful, lookalike or benign")
        folds = {split: frozenset(raw.get(split) or []) for split in SPLITS}
        taken = [fold for split in SPLITS for fold in folds[split]]
        if len(taken) != len(set(taken)) or not set(taken) <= set(range(10)):
            raise ConfigError(f"set {name}: each fold 0-9 may go to one split only")
        return cls(name, str(raw["file"]), raw["kind"], dict(raw.get("where") or {}), folds)

    def split_of(self, fold: int) -> str | None:
        return next((split for split in SPLITS if fold in self.folds[split]), None)


def load_specs(path: Path = DEFAULT_CONFIG) -> list[SetSpec]:
    if not path.is_file():
        raise ConfigError(f"set definitions not found: {path}")
    sets = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("sets") or {}
    return [SetSpec.parse(name, raw) for name, raw in sets.items()]


def text_fold(text: str) -> int:
    return int(hashlib.md5(normalise_prompt(text).encode("utf-8")).hexdigest(), 16) % 10


def _source_rows(file: str, data_dir: Path) -> list[dict[str, Any]]:
    """Rows `{"text", "category", "fold"?, ...}` of a safety-extra JSONL, safety-prompts JSON, AdvBench CSV or
    written YAML file."""
    if file.startswith(WRITTEN):
        groups = yaml.safe_load((PROJECT_ROOT / file.removeprefix(WRITTEN)).read_text(encoding="utf-8"))
        return [{"text": text, "category": group} for group, texts in groups.items() for text in texts]
    path = data_dir / file
    if not path.is_file():
        raise DataError(f"source not found: {path}")
    if path.name.endswith((".jsonl", ".jsonl.gz")):
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            column = next(c for c in CSV_PROMPT_COLUMNS if c in (reader.fieldnames or []))
            return [{"text": row[column], "category": row.get("Category") or None} for row in reader]
    return [
        {
            "text": record_prompt(record),
            "category": record.get("category") if isinstance(record, dict) else None,
        }
        for record in read_json_prompt_records(path)
    ]


def build_sets(specs: list[SetSpec], data_dir: Path) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """split -> set name -> prompt records; duplicates (after normalising) and empty prompts are dropped."""
    out: dict[str, dict[str, list[dict[str, Any]]]] = {split: {} for split in SPLITS}
    for spec in specs:
        seen: set[str] = set()
        for row in _source_rows(spec.file, data_dir):
            text = row.get("text")
            if not isinstance(text, str) or not text.strip() or normalise_prompt(text) in seen:
                continue
            if any(row.get(key) != value for key, value in spec.where.items()):
                continue
            seen.add(normalise_prompt(text))
            fold = row["fold"] if isinstance(row.get("fold"), int) else text_fold(text)
            split = spec.split_of(fold)
            if split is not None:
                record = {"instruction": text.strip(), "category": row.get("category"), "kind": spec.kind}
                out[split].setdefault(spec.name, []).append(record)
    return out


def write_sets(sets: dict[str, dict[str, list[dict[str, Any]]]], out: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = {}
    for split, by_name in sets.items():
        (out / split).mkdir(parents=True, exist_ok=True)
        for name, records in by_name.items():
            text = json.dumps(records, indent=1, ensure_ascii=False) + "\n"
            # The split in the file name: the evaluator names a split by its file, and val and test stay apart.
            (out / split / f"{split}_{name}.json").write_text(text, encoding="utf-8")
            manifest[f"{split}/{split}_{name}.json"] = {
                "kind": records[0]["kind"],
                "size": len(records),
                "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
            }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lab.alignment.sets",
        description="Write the harmful, look-alike and benign prompt sets of world_sets.yaml, split by fold "
        "into train, val and test.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="set definitions (YAML)")
    parser.add_argument("--data-dir", type=Path, default=SHARED_DATA_DIR, help="root of the source files")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--debug", action="store_true", help="debug logs, and tracebacks on errors")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.debug)
    return run_cli(lambda: _run(args), debug=args.debug)


def _run(args: argparse.Namespace) -> int:
    manifest = write_sets(build_sets(load_specs(args.config), args.data_dir), args.out)
    for name, entry in manifest.items():
        print(f"{name:40s} {entry['kind']:10s} {entry['size']:5d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
