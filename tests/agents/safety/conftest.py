"""Fixtures for the safety guard tests: the shipped classifier on the real packaged MiniLM, once per session."""

from __future__ import annotations

import pytest
import torch

from agents.safety.classifier import EmbeddingClassifierGuard
from agents.safety.training_data import SafetyData
from configs.settings import load_settings


@pytest.fixture(autouse=True)
def one_torch_thread():
    """As in service: on a small shared CPU two torch threads stall each other (DESIGN.md)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def classifier_guard() -> EmbeddingClassifierGuard:
    return EmbeddingClassifierGuard.load(load_settings().safety.classifier_path)


@pytest.fixture(scope="session")
def safety_data(shared_data) -> SafetyData:
    return SafetyData(shared_data, seed=0)
