"""Prompt sets for generation: safety-prompts JSON, AdvBench-style CSV, or the conversations of HH pairs.

A spec is `FILE` or `FILE:N` (the first N prompts, in file order, so every run sees the same ones). A prompt
is a conversation (a list of chat messages ending with a user turn). Malformed records are counted and
skipped; a set with no usable prompt is an error.
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finetune.data import DataError, DataReport, MalformedRowError, load_pairs, pointwise_rows, read_json_list

logger = logging.getLogger(__name__)

Message = dict[str, str]
CSV_PROMPT_COLUMNS = ("Behavior", "goal", "prompt", "instruction")
_SPEC = re.compile(r"^(?P<path>.+?):(?P<n>\d+)$")
_SPACE = re.compile(r"\s+")


@dataclass
class PromptSet:
    """A named set of conversations to answer; `name` is the file's stem (e.g. "harmful_val")."""

    name: str
    path: str
    conversations: list[list[Message]]
    n_in_file: int
    dropped_training_overlap: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.conversations)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "size": self.size,
            "n_in_file": self.n_in_file,
            "dropped_training_overlap": self.dropped_training_overlap,
            "skipped": self.skipped,
        }


def parse_spec(spec: str) -> tuple[str, int | None]:
    """`"data/x.json:50"` -> ("data/x.json", 50); `"data/x.json"` -> ("data/x.json", None)."""
    match = _SPEC.match(spec)
    if match is None:
        return spec, None
    n = int(match["n"])
    if n <= 0:
        raise DataError(f"{spec}: the count after ':' must be positive")
    return match["path"], n


def normalise_prompt(text: str) -> str:
    """The form in which prompts are compared for overlap: case and whitespace do not matter."""
    return _SPACE.sub(" ", text).strip().lower()


def _user_turn(text: Any) -> list[Message]:
    if not isinstance(text, str) or not text.strip():
        raise MalformedRowError("empty or non-text prompt")
    return [{"role": "user", "content": text.strip()}]


def read_json_prompt_records(path: Path) -> list[Any]:
    """The records of a safety-prompts JSON file: `{"instruction" | "prompt": ..., ...}` objects or strings."""
    return read_json_list(path, "{'instruction': ...} records or strings")


def record_prompt(record: Any) -> Any:
    """The prompt of one such record (not yet checked to be text)."""
    return record.get("instruction", record.get("prompt")) if isinstance(record, dict) else record


def _read_json_prompts(path: Path, report: DataReport) -> list[list[Message]]:
    conversations = []
    for record in read_json_prompt_records(path):
        report.rows_read += 1
        try:
            conversations.append(_user_turn(record_prompt(record)))
        except MalformedRowError as exc:
            report.skip(str(exc), record)
    return conversations


def _read_csv_prompts(path: Path, report: DataReport) -> list[list[Message]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        column = next((c for c in CSV_PROMPT_COLUMNS if c in (reader.fieldnames or [])), None)
        if column is None:
            raise DataError(f"{path} has none of the prompt columns {', '.join(CSV_PROMPT_COLUMNS)}")
        conversations = []
        for record in reader:
            report.rows_read += 1
            try:
                conversations.append(_user_turn(record[column]))
            except MalformedRowError as exc:
                report.skip(str(exc), record)
    return conversations


def _read_pair_conversations(source: str, report: DataReport) -> list[list[Message]]:
    """The conversation before the chosen response of each HH pair."""
    rows = pointwise_rows(load_pairs(source, report=report), report)
    return [row["messages"] for row in rows if row["score"] == 1.0]


def load_prompt_set(
    spec: str, exclude: frozenset[str] | set[str] = frozenset(), limit: int | None = None
) -> PromptSet:
    """The prompts of `FILE[:N]`, without those in `exclude` (normalised training prompts), capped at N and
    at `limit` (whichever is smaller)."""
    source, count = parse_spec(spec)
    path = Path(source).expanduser()
    if not path.is_file():
        raise DataError(f"prompt file not found: {source}")
    report = DataReport()
    if path.name.endswith((".jsonl", ".jsonl.gz")):
        conversations = _read_pair_conversations(str(path), report)
    elif path.suffix == ".json":
        conversations = _read_json_prompts(path, report)
    elif path.suffix == ".csv":
        conversations = _read_csv_prompts(path, report)
    else:
        raise DataError(
            f"{source}: use a .json (safety-prompts), .csv (AdvBench) or .jsonl[.gz] (HH pairs) file"
        )
    report.check(max_bad_share=1.0, what=str(path))
    n_in_file = len(conversations)
    kept = [c for c in conversations if normalise_prompt(last_user_text(c)) not in exclude]
    if n_in_file > len(kept):
        logger.warning(
            "%s: %d prompts also occur in the training data; not evaluated", path.name, n_in_file - len(kept)
        )
    if not kept:
        raise DataError(f"{source}: every prompt occurs in the training data; evaluate on a held-out set")
    caps = [n for n in (count, limit) if n]
    return PromptSet(
        name=path.name.split(".")[0],
        path=str(path),
        conversations=kept[: min(caps)] if caps else kept,
        n_in_file=n_in_file,
        dropped_training_overlap=n_in_file - len(kept),
        skipped=dict(report.skipped),
    )


def last_user_text(conversation: list[Message]) -> str:
    return next(m["content"] for m in reversed(conversation) if m["role"] == "user")


def training_prompts(train_file: str) -> set[str]:
    """Every user turn of a training file (HH pairs and point-wise rows), normalised: the `exclude` of
    `load_prompt_set`, so that no evaluated prompt was trained on."""
    report = DataReport()
    rows = pointwise_rows(load_pairs(train_file, report=report), report)
    return {normalise_prompt(m["content"]) for row in rows for m in row["messages"] if m["role"] == "user"}
