"""Fixtures for the finetune tests: the embedded tokenizer, the real HH pairs, small files written here."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from configs.settings import ModelSettings


@pytest.fixture(scope="session")
def hh_file(shared_data: Path) -> Path:
    path = shared_data / "hh-rlhf" / "harmless-base-test.jsonl.gz"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(scope="session")
def hh_records(hh_file: Path) -> list[dict]:
    with gzip.open(hh_file, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture(scope="session")
def tokenizer():
    from finetune.modeling import load_tokenizer

    return load_tokenizer(ModelSettings())


def write_jsonl(path: Path, records: list, *, extra_lines: list[str] = ()) -> Path:
    lines = [json.dumps(record) for record in records] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def short_pairs_file(hh_records, tmp_path_factory) -> Path:
    """Eight real HH pairs short enough for a CPU training step of a few seconds."""
    short = [r for r in hh_records if len(r["chosen"]) + len(r["rejected"]) < 450][:8]
    return write_jsonl(tmp_path_factory.mktemp("data") / "short_pairs.jsonl", short)
