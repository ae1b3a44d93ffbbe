"""Fixtures for the safety guard tests: the shipped classifier on the real packaged MiniLM, once per session."""

from __future__ import annotations

import pytest

from agents.safety.classifier import EmbeddingClassifierGuard
from configs.settings import load_settings


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread):
    """Every guard test runs on one torch thread, as the service does."""


@pytest.fixture(scope="session")
def classifier_guard() -> EmbeddingClassifierGuard:
    return EmbeddingClassifierGuard.load(load_settings().safety.classifier_path)

