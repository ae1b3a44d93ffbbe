"""Fixtures for the finetune tests: the embedded tokenizer (the HH pairs are in tests/conftest.py)."""

from __future__ import annotations

import pytest

from configs.settings import ModelSettings


@pytest.fixture(scope="session")
def tokenizer():
    from finetune.modeling import load_tokenizer

    return load_tokenizer(ModelSettings())
