"""Offline, deterministic defaults for every test; fixtures shared across packages."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from configs.settings import SHARED_DATA_DIR

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")



@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA_DIR.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA_DIR}")
    return SHARED_DATA_DIR


@pytest.fixture
def one_torch_thread():
    """As in the service: on a small shared CPU two torch threads stall each other (DESIGN.md)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


def write_jsonl(path: Path, records: list, *, extra_lines: list[str] = ()) -> Path:
    lines = [json.dumps(record) for record in records] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def short_pairs_file(hh_records, tmp_path_factory) -> Path:
    """Eight real HH pairs short enough for a CPU training step of a few seconds."""
    short = [r for r in hh_records if len(r["chosen"]) + len(r["rejected"]) < 450][:8]
    return write_jsonl(tmp_path_factory.mktemp("data") / "short_pairs.jsonl", short)


@pytest.fixture(scope="session")
def safety_data(shared_data: Path):
    """The guard's labelled data sets (lab.guard.training_data), read once."""
    from lab.guard.training_data import SafetyData

    return SafetyData(shared_data, seed=0)
