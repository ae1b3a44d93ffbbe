"""Preference data: HH transcripts -> chat messages -> point-wise rows -> token ids with response-only labels.

A pair record (`{"chosen": transcript, "rejected": transcript}`) gives two point-wise rows: the chosen
response with score 1 and the rejected one with score 0. Point-wise records (`{"text" | "messages", "score"}`)
give one row each. Rows that cannot be used are counted in a `DataReport` with a few examples, and skipped;
`DataReport.check` fails the run only when more than the allowed share is bad.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from configs.errors import AppError
from configs.settings import PROJECT_ROOT

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100  # label of a position the loss skips (prompt, padding): PyTorch's cross-entropy default

LOCAL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".parquet")
ROLE_NAMES = {"Human": "user", "Assistant": "assistant"}
# A turn marker: the HH format separates turns with a blank line and a speaker name.
_TURN_MARKER = re.compile(r"\n\n(Human|Assistant):")
EXAMPLES_PER_REASON = 3

Message = dict[str, str]
RowView = Literal["pointwise", "sft"]


class DataError(AppError, ValueError):
    """Training data that cannot be used; the message says what is wrong and how to fix it."""


class MalformedRowError(ValueError):
    """One row that cannot be used; its message is the reason counted in the `DataReport`."""


@dataclass
class DataReport:
    """Counts of rows read, kept and skipped (by reason, with a few examples of each)."""

    rows_read: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, reason: str, example: Any) -> None:
        self.skipped[reason] += 1
        samples = self.examples.setdefault(reason, [])
        if len(samples) < EXAMPLES_PER_REASON:
            samples.append(repr(example)[:200])

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    @property
    def rows_kept(self) -> int:
        return self.rows_read - self.n_skipped

    def bad_share(self) -> float:
        return self.n_skipped / self.rows_read if self.rows_read else 0.0

    def summary(self) -> str:
        reasons = ", ".join(f"{reason}: {count}" for reason, count in self.skipped.most_common())
        return f"{self.rows_kept}/{self.rows_read} rows kept" + (f"; skipped {reasons}" if reasons else "")

    def check(self, max_bad_share: float, what: str) -> None:
        """Log what was skipped; raise `DataError` when more than `max_bad_share` of the rows are bad."""
        if self.n_skipped:
            logger.warning("%s: %s", what, self.summary())
            for reason, samples in self.examples.items():
                logger.warning("  %s, e.g. %s", reason, samples[0])
        if self.rows_read and self.rows_kept == 0:
            raise DataError(f"{what}: no usable rows ({self.summary()})")
        if self.bad_share() > max_bad_share:
            examples = "; ".join(f"{reason}: {samples[0]}" for reason, samples in self.examples.items())
            raise DataError(
                f"{what}: {self.bad_share():.1%} of rows are unusable, more than max_bad_share="
                f"{max_bad_share:.1%} ({self.summary()}). Examples: {examples}. "
                "Fix the data or raise --max_bad_share."
            )

    def to_dict(self) -> dict[str, Any]:
        return {"rows_read": self.rows_read, "rows_kept": self.rows_kept, "skipped": dict(self.skipped)}


# ---------------------------------------------------------------- parsing


def parse_hh_transcript(text: str) -> list[Message]:
    """`"\\n\\nHuman: a\\n\\nAssistant: b"` -> `[{"role": "user", "content": "a"}, {"role": "assistant",
    "content": "b"}]`.

    Consecutive turns of one speaker are merged (some chat templates insist on alternation). The last
    assistant turn may be empty; `split_response` rejects that. Raises `MalformedRowError` when the text is
    not an HH transcript.
    """
    if not isinstance(text, str):
        raise MalformedRowError(f"transcript is {type(text).__name__}, not text")
    pieces = _TURN_MARKER.split(text)
    if pieces[0].strip() or len(pieces) < 3:
        raise MalformedRowError("not an HH transcript (expected '\\n\\nHuman: ...\\n\\nAssistant: ...')")
    messages: list[Message] = []
    for speaker, content in zip(pieces[1::2], pieces[2::2], strict=True):
        role, content = ROLE_NAMES[speaker], content.strip()
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"] = f"{messages[-1]['content']}\n\n{content}".strip()
        else:
            messages.append({"role": role, "content": content})
    return messages


def split_response(messages: list[Message]) -> tuple[list[Message], str]:
    """The conversation before the final assistant turn, and that turn's text (the response)."""
    if not messages or messages[-1].get("role") != "assistant":
        raise MalformedRowError("no final assistant turn")
    response = (messages[-1].get("content") or "").strip()
    if not response:
        raise MalformedRowError("empty response")
    conversation = messages[:-1]
    if not any(message.get("role") == "user" for message in conversation):
        raise MalformedRowError("no user turn before the response")
    return conversation, response


def _messages_of(record: dict[str, Any], key: str) -> list[Message]:
    value = record.get(key)
    if isinstance(value, str):
        return parse_hh_transcript(value)
    if isinstance(value, list) and all(
        isinstance(m, dict) and {"role", "content"} <= m.keys() for m in value
    ):
        return [{"role": str(m["role"]), "content": str(m["content"])} for m in value]
    raise MalformedRowError(f"'{key}' is neither an HH transcript nor a list of chat messages")


def pointwise_rows(
    records: list[dict[str, Any]], report: DataReport, view: RowView = "pointwise"
) -> list[dict[str, Any]]:
    """Point-wise rows `{"messages", "response", "score", "pair_id"}` from pair or point-wise records.

    Pairs give a chosen row (score 1) and a rejected row (score 0) sharing a `pair_id`; point-wise records
    (`text` or `messages`, plus `score` in [0, 1]) get `pair_id` -1. The "sft" view keeps the positives
    (score 1) of the usable rows.
    """
    rows: list[dict[str, Any]] = []
    for pair_id, record in enumerate(records):
        if not isinstance(record, dict):
            report.rows_read += 1
            report.skip("not a JSON object", record)
            continue
        if "chosen" in record or "rejected" in record:
            candidates = [("chosen", 1.0, pair_id), ("rejected", 0.0, pair_id)]
        elif "score" in record:
            candidates = [("messages" if "messages" in record else "text", record["score"], -1)]
        else:
            report.rows_read += 1
            report.skip("no chosen/rejected or score column", record)
            continue
        for key, score, row_pair in candidates:
            report.rows_read += 1
            try:
                score = float(score)
                if not 0.0 <= score <= 1.0:
                    raise MalformedRowError("score outside [0, 1]")
                conversation, response = split_response(_messages_of(record, key))
            except (MalformedRowError, TypeError, ValueError) as exc:
                report.skip(str(exc), record.get(key, record))
                continue
            rows.append({"messages": conversation, "response": response, "score": score, "pair_id": row_pair})
    if view == "sft":
        return [row for row in rows if row["score"] == 1.0]
    return rows


# ---------------------------------------------------------------- loading


def resolve_source(source: str) -> str:
    """A local data file as given, or relative to the repository root; anything else is a hub dataset id."""
    if not source.endswith(LOCAL_SUFFIXES):
        return source
    path = Path(source).expanduser()
    for candidate in (path, PROJECT_ROOT / path):
        if candidate.is_file():
            return str(candidate.resolve())
    raise DataError(f"data file not found: {source} (looked in the working directory and {PROJECT_ROOT})")


def _read_json_lines(path: Path, report: DataReport | None) -> list[dict[str, Any]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    records: list[dict[str, Any]] = []
    with opener(path, "rt", encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if report is None:
                    logger.warning("%s:%d is not valid JSON; skipped", path.name, line_number)
                else:
                    report.rows_read += 1
                    report.skip("unparseable JSON line", line)
    return records


def load_pairs(
    source: str, split: str | None = None, report: DataReport | None = None
) -> list[dict[str, Any]]:
    """Records of a hub dataset split (`datasets.load_dataset(source, split=split or "train")`) or a local
    .jsonl / .jsonl.gz / .json / .parquet file (`split` is then ignored). Unparseable JSON lines are counted
    in `report` (logged when there is none) and skipped."""
    resolved = resolve_source(source)
    if not resolved.endswith(LOCAL_SUFFIXES):
        return _load_hub_split(resolved, split or "train")
    path = Path(resolved)
    if path.name.endswith((".jsonl", ".jsonl.gz")):
        return _read_json_lines(path, report)
    if path.suffix == ".json":
        return read_json_list(path, "records")
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def read_json_list(path: Path, items: str) -> list[Any]:
    """The list a .json file holds; a DataError naming the file (and what the list should hold) otherwise."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, list):
        raise DataError(f"{path} must hold a JSON list of {items}")
    return data


def _load_hub_split(dataset_id: str, split: str) -> list[dict[str, Any]]:
    import datasets

    try:
        return datasets.load_dataset(dataset_id, split=split).to_list()
    except Exception as exc:  # datasets raises many unrelated types (hub, cache, split errors)
        raise DataError(
            f"cannot load dataset {dataset_id!r} split {split!r}: {exc}. Check the id and split, or give a "
            "local .jsonl/.jsonl.gz/.json/.parquet file; offline, the dataset must be in the datasets cache."
        ) from exc


def split_holdout(
    records: list[dict[str, Any]], fraction: float, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Shuffle-split whole records (so both rows of a pair stay on one side) into (train, held-out)."""
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_holdout = max(1, round(len(records) * fraction)) if fraction > 0 else 0
    holdout = sorted(order[:n_holdout])
    train = sorted(order[n_holdout:])
    return [records[i] for i in train], [records[i] for i in holdout]


def records_fingerprint(records: list[dict[str, Any]]) -> str:
    """sha256 over the records as canonical JSON: the same data gives the same hash whatever its source."""
    digest = hashlib.sha256()
    for record in records:
        digest.update(json.dumps(record, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


# ---------------------------------------------------------------- tokenization


def tokenize_example(
    tokenizer: PreTrainedTokenizerBase,
    conversation: list[Message],
    response: str,
    max_length: int,
) -> dict[str, list[int]]:
    """Token ids of the conversation + response in the model's chat template, with labels on the response
    (its text and the end-of-turn token) and `IGNORE_INDEX` elsewhere.

    Too long: the oldest turns go first (a leading system message stays, the kept part starts at a user
    turn); raises `MalformedRowError("too long ...")` when even the last user turn + response do not fit.
    """
    system = conversation[:1] if conversation and conversation[0]["role"] == "system" else []
    turns = conversation[len(system) :]
    user_starts = [i for i, message in enumerate(turns) if message["role"] == "user"]
    for start in user_starts:
        encoded = _encode(tokenizer, system + turns[start:], response)
        if len(encoded["input_ids"]) <= max_length:
            return encoded
    raise MalformedRowError(f"too long: the last turn and response exceed max_length={max_length}")


def end_of_turn_ids(tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """Ids of the tokens that can close a turn: the named special tokens and every added token marked special.

    The named ones alone are not enough: transformers' GGUF conversion of SmolLM2 names `<|im_start|>` as
    eos, bos and pad, so `all_special_ids` lacks `<|im_end|>`, and a response mask built from it dropped the
    end of turn from the labels: the model was never taught to stop.
    """
    added = {token_id for token_id, token in tokenizer.added_tokens_decoder.items() if token.special}
    return set(tokenizer.all_special_ids) | added


def _encode(
    tokenizer: PreTrainedTokenizerBase, conversation: list[Message], response: str
) -> dict[str, list[int]]:
    prompt = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(
        conversation + [{"role": "assistant", "content": response}], tokenize=False
    )
    response_start = full.find(response, len(prompt))
    if not full.startswith(prompt) or response_start < 0:
        raise MalformedRowError(
            "the chat template does not render the prompt as a prefix of prompt + response"
        )
    response_end = response_start + len(response)
    # Offsets rather than a separately tokenized prompt: BPE merges across the boundary cannot shift labels.
    encoding = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    end_of_turn = end_of_turn_ids(tokenizer)
    input_ids: list[int] = []
    labels: list[int] = []
    for token_id, (start, _end) in zip(encoding["input_ids"], encoding["offset_mapping"], strict=True):
        if start >= response_end:
            # Keep the end-of-turn token closing the response (the model must learn to stop); drop the rest.
            if token_id in end_of_turn:
                input_ids.append(token_id)
                labels.append(token_id)
            break
        input_ids.append(token_id)
        labels.append(token_id if start >= len(prompt) else IGNORE_INDEX)
    if all(label == IGNORE_INDEX for label in labels):
        raise MalformedRowError("the response has no tokens")
    return {"input_ids": input_ids, "labels": labels}


def tokenize_rows(
    tokenizer: PreTrainedTokenizerBase,
    rows: list[dict[str, Any]],
    max_length: int,
    report: DataReport,
) -> list[dict[str, Any]]:
    """`tokenize_example` over point-wise rows; rows that cannot fit are counted in `report` and dropped."""
    tokenized: list[dict[str, Any]] = []
    for row in rows:
        try:
            encoded = tokenize_example(tokenizer, row["messages"], row["response"], max_length)
        except MalformedRowError as exc:
            report.skip(str(exc), row["response"])
            continue
        tokenized.append({**encoded, "score": row["score"], "pair_id": row["pair_id"]})
    return tokenized
