"""The public safety sets of ../shared/data/safety-extra and the project's technical questions, split as
lab/guard/mix.yaml says.

safety-extra holds 11 sources in one JSON-lines schema (text, label, Llama Guard 3 S-code, lg3_scope,
target, group...; its README gives licences and mappings). Every split here is a pure function of the
files, the mix and the seed: a row's side is decided by a seeded hash of its group, so the templates of a
templated set (HateCheck, AART) never straddle training and validation.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml

from agents.safety.verdict import HAZARD_CATEGORIES
from lab.guard.training_data import CORPUS_DIR, Example, SafetyDataError, normalize, seeded_bucket

EXTRA_DIR = "safety-extra"
MIX_FILE = Path(__file__).resolve().parent / "mix.yaml"
TECHNICAL_QUESTIONS_FILE = CORPUS_DIR / "technical_questions.yaml"
USES = ("train", "val", "split", "scope", "exclude")
Stage = Literal["request", "response"]


@dataclass(frozen=True)
class SourceRow:
    """One safety-extra row as an Example, with what splitting and reporting need."""

    example: Example
    file: str  # "<source>/<file stem>", e.g. "hatecheck/test_suite"
    group: str  # kept together by every split: the template id of templated sets, else the normalised text
    scope: str  # lg3_scope: in | borderline | out (unsafe rows), n/a or out (safe rows)
    orig_category: str

    @property
    def source(self) -> str:
        return self.file.split("/", 1)[0]

    @property
    def stage(self) -> Stage:
        return "response" if self.example.answer is not None else "request"


@dataclass(frozen=True)
class Mix:
    files: dict[str, str]  # file -> use
    seed: int
    split_val_percent: int
    calibration_percent: int
    scope_val: tuple[str, ...]
    max_train_per_group: dict[str, int]
    technical_val_percent: int
    leave_one_out: tuple[str, ...]


def load_mix(path: Path = MIX_FILE) -> Mix:
    raw: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    bad = {name: use for name, use in raw["files"].items() if use not in USES}
    if bad:
        raise SafetyDataError(f"{path.name}: unknown uses {bad}; each file is one of {USES}")
    return Mix(
        files=dict(raw["files"]),
        seed=int(raw["seed"]),
        split_val_percent=int(raw["split_val_percent"]),
        calibration_percent=int(raw["calibration_percent"]),
        scope_val=tuple(raw["scope_val"]),
        max_train_per_group=dict(raw.get("max_train_per_group") or {}),
        technical_val_percent=int(raw["technical_val_percent"]),
        leave_one_out=tuple(raw["leave_one_out"]),
    )


def extra_path(data_dir: Path, name: str) -> Path:
    """The file of `name` ("hatecheck/test_suite"): .jsonl, or .jsonl.gz for the large ones."""
    for suffix in (".jsonl", ".jsonl.gz"):
        path = Path(data_dir) / EXTRA_DIR / f"{name}{suffix}"
        if path.is_file():
            return path
    raise SafetyDataError(
        f"{EXTRA_DIR}/{name}.jsonl(.gz) not found under {data_dir}; point data_dir (APP__DATA_DIR, --data-dir) "
        "at the shared data folder"
    )


def _row(name: str, raw: dict[str, Any]) -> SourceRow:
    unsafe = raw["label"] == "unsafe"
    code = raw.get("lg3")
    categories = (code,) if unsafe and code in HAZARD_CATEGORIES else ()
    answer = raw.get("response") if raw.get("target") == "response" else None
    example = Example(raw["text"].strip(), unsafe, categories, f"extra/{name}", answer)
    group = str(raw["group"]) if raw.get("group") else normalize(raw["text"])
    return SourceRow(example, name, group, str(raw.get("lg3_scope", "n/a")), str(raw.get("orig_category", "")))


@lru_cache(maxsize=32)  # training and evaluation split the same files several times; rows are frozen
def read_extra(data_dir: Path, name: str) -> tuple[SourceRow, ...]:
    """The rows of one file, minus unsafe rows outside the Llama Guard 3 taxonomy (lg3_scope `out`)."""
    path = extra_path(data_dir, name)
    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                row = _row(name, json.loads(line))
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
                raise SafetyDataError(f"{path}: line {number} does not follow the safety-extra schema ({exc})") from exc
            if not (row.example.unsafe and row.scope == "out"):
                rows.append(row)
    return tuple(rows)


def is_validation(row: SourceRow, use: str, mix: Mix) -> bool:
    if use == "val":
        return True
    if use == "split":
        return seeded_bucket(row.group, mix.seed) < mix.split_val_percent
    if use == "scope":
        return row.scope in mix.scope_val
    return False


def calibrates(row: SourceRow, mix: Mix) -> bool:
    """Whether a validation row of a split or scope file is in its calibration half (a second seeded hash of
    its group, so a template stays on one side); rows of files held out whole never calibrate."""
    return (mix.files[row.file] in ("split", "scope")
            and seeded_bucket(row.group, mix.seed + 1) < mix.calibration_percent)


@dataclass(frozen=True)
class ExtraSplits:
    train: list[SourceRow]
    validation: list[SourceRow]


def extra_splits(data_dir: Path, mix: Mix) -> ExtraSplits:
    """Every used file's rows on their side of the mix; AART-style templated sets capped per group in training."""
    train: list[SourceRow] = []
    validation: list[SourceRow] = []
    for name, use in mix.files.items():
        if use == "exclude":
            continue
        cap = mix.max_train_per_group.get(name)
        per_group: dict[str, int] = {}
        # Rows in a fixed order (by group hash, then text) so a cap keeps the same rows on every machine.
        rows = sorted(read_extra(data_dir, name),
                      key=lambda r: (seeded_bucket(r.group, mix.seed), r.group, r.example.request))
        for row in rows:
            if is_validation(row, use, mix):
                validation.append(row)
                continue
            per_group[row.group] = per_group.get(row.group, 0) + 1
            if cap is None or per_group[row.group] <= cap:
                train.append(row)
    return ExtraSplits(train, validation)


def extra_files(data_dir: Path, mix: Mix) -> list[Path]:
    return [extra_path(data_dir, name) for name, use in mix.files.items() if use != "exclude"]


def technical_questions(mix: Mix, part: Literal["train", "val"]) -> list[Example]:
    """The written technical and product questions (all safe) on one side of a seeded hash split."""
    topics = yaml.safe_load(TECHNICAL_QUESTIONS_FILE.read_text(encoding="utf-8"))
    examples = []
    for topic, questions in topics.items():
        for question in questions:
            if not isinstance(question, str):
                raise SafetyDataError(f"{TECHNICAL_QUESTIONS_FILE.name} ({topic}): {question!r} is not a plain string")
            in_val = seeded_bucket(question, mix.seed) < mix.technical_val_percent
            if in_val == (part == "val"):
                examples.append(Example(question.strip(), False, (), f"written/technical_{topic}"))
    return examples
