"""From a `UlmaConfig` to tokenized train and held-out `datasets.Dataset`s, with a report of what was skipped.

Records are split into train and held-out before they become point-wise rows, so both rows of a pair land
on the same side. Tokenizing runs through `Dataset.map` (in parallel with `dataset_num_proc`) so a 300k-row
run keeps its token ids in Arrow, not in Python lists.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from finetune.data import (
    LOCAL_SUFFIXES,
    DataError,
    DataReport,
    MalformedRowError,
    load_pairs,
    pointwise_rows,
    records_fingerprint,
    resolve_source,
    split_holdout,
    tokenize_example,
)

if TYPE_CHECKING:
    import datasets
    from transformers import PreTrainedTokenizerBase

    from finetune.ulma_config import UlmaConfig

logger = logging.getLogger(__name__)


@dataclass
class PreparedData:
    train: datasets.Dataset
    eval: datasets.Dataset | None
    train_report: DataReport
    eval_report: DataReport
    source: str
    n_train_records: int
    n_eval_records: int
    fingerprint: str  # sha256 of the train + held-out records as used

    def summary(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "sha256": self.fingerprint,
            "train_records": self.n_train_records,
            "eval_records": self.n_eval_records,
            "train_rows": len(self.train),
            "eval_rows": len(self.eval) if self.eval is not None else 0,
            "train_positive_rows": count_positive(self.train),
            "train_report": self.train_report.to_dict(),
            "eval_report": self.eval_report.to_dict(),
        }


def count_positive(dataset: datasets.Dataset) -> int:
    return sum(1 for score in dataset["score"] if score >= 1.0)


def _tokenize_batch(
    batch: dict[str, list], tokenizer: PreTrainedTokenizerBase, max_length: int
) -> dict[str, list]:
    out: dict[str, list] = {"input_ids": [], "labels": [], "length": [], "error": []}
    for conversation, response in zip(batch["messages"], batch["response"], strict=True):
        try:
            encoded = tokenize_example(tokenizer, conversation, response, max_length)
        except MalformedRowError as exc:
            encoded, error = {"input_ids": [], "labels": []}, str(exc)
        else:
            error = ""
        out["input_ids"].append(encoded["input_ids"])
        out["labels"].append(encoded["labels"])
        out["length"].append(len(encoded["input_ids"]))
        out["error"].append(error)
    return out


def tokenize_dataset(
    tokenizer: PreTrainedTokenizerBase,
    rows: list[dict[str, Any]],
    max_length: int,
    report: DataReport,
    num_proc: int | None = None,
) -> datasets.Dataset:
    """Point-wise rows -> Dataset of input_ids, labels, length, score, pair_id; failures go to `report`."""
    import datasets

    if not rows:
        raise DataError("no usable rows to tokenize")
    raw = datasets.Dataset.from_list(rows)
    tokenized = raw.map(
        _tokenize_batch,
        batched=True,
        fn_kwargs={"tokenizer": tokenizer, "max_length": max_length},
        remove_columns=["messages", "response"],
        num_proc=num_proc if num_proc and len(rows) > 10_000 else None,
        desc="tokenizing",
    )
    errors = tokenized["error"]
    for error, row in zip(errors, rows, strict=True):
        if error:
            report.skip(error, row["response"])
    return tokenized.filter(lambda error: not error, input_columns="error").remove_columns("error")


def _load_records(config: UlmaConfig, source: str, train_report: DataReport, eval_report: DataReport):
    is_local = source.endswith(LOCAL_SUFFIXES)
    train_records = load_pairs(source, config.dataset_split, train_report)
    if not is_local and config.eval_split:
        eval_records = load_pairs(source, config.eval_split, eval_report)
    else:
        train_records, eval_records = split_holdout(train_records, config.val_fraction, config.seed)
    if config.max_train_pairs is not None:
        train_records = train_records[: config.max_train_pairs]
    if config.max_eval_pairs is not None:
        eval_records = eval_records[: config.max_eval_pairs]
    return train_records, eval_records


def prepare_data(config: UlmaConfig, tokenizer: PreTrainedTokenizerBase) -> PreparedData:
    """Load, split, expand to point-wise rows, tokenize; raise `DataError` when too much of it is bad."""
    source = resolve_source(config.dataset)
    train_report, eval_report = DataReport(), DataReport()
    train_records, eval_records = _load_records(config, source, train_report, eval_report)
    if not train_records:
        raise DataError(f"{config.dataset}: no training records")
    view = "sft" if config.loss_type == "sft" else "pointwise"
    prepared = []
    for records, report, what in (
        (train_records, train_report, "train"),
        (eval_records, eval_report, "held-out"),
    ):
        if not records:
            prepared.append(None)
            continue
        rows = pointwise_rows(records, report, view)
        dataset = (
            tokenize_dataset(tokenizer, rows, config.max_length, report, config.dataset_num_proc)
            if rows
            else None
        )
        report.check(config.max_bad_share, f"{config.dataset} ({what} rows, max_length={config.max_length})")
        prepared.append(dataset)
    train, held_out = prepared
    logger.info("train: %s; held-out: %s", train_report.summary(), eval_report.summary())
    return PreparedData(
        train=train,
        eval=held_out,
        train_report=train_report,
        eval_report=eval_report,
        source=source,
        n_train_records=len(train_records),
        n_eval_records=len(eval_records),
        fingerprint=records_fingerprint(train_records + eval_records),
    )
