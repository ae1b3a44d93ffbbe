"""The guard's training and evaluation run on one torch thread, as the service does."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread(one_torch_thread):
    """Every training and evaluation test runs on one torch thread."""
