"""What the agent needs from a generator backend, whichever runs the model: the local transformers model
(agents.generator) or a remote OpenAI-compatible server (agents.openai_generator); agents.parts picks one."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Protocol

from agents.messages import ChatMessages
from configs.errors import AppError


class GenerationError(AppError, RuntimeError):
    """Generation failed; the message says why."""


class GeneratorUnavailable(GenerationError):
    """The model server could not be reached, timed out or was overloaded: worth retrying later."""


class GenerationStats:
    """Running totals a host can export: tokens generated and seconds the generator was busy."""

    def __init__(self) -> None:
        self.tokens = 0
        self.busy_seconds = 0.0
        self._lock = threading.Lock()

    def record(self, tokens: int, seconds: float) -> None:
        with self._lock:
            self.tokens += tokens
            self.busy_seconds += seconds


class ChatGenerator(Protocol):
    """Chat messages in, the answer's text out: whole, or piece by piece from `stream`.

    Closing the iterator `stream` returned ends generation (a caller who left costs no more tokens);
    failures raise GenerationError.
    """

    stats: GenerationStats
    concurrency: int  # generations worth running at once: 1 for an engine that serializes them

    def generate(self, messages: ChatMessages) -> str: ...

    def stream(self, messages: ChatMessages) -> Iterator[str]: ...

    def close(self) -> None:
        """Release what the backend holds (engine threads, connections)."""
