"""Admission control in front of the agent: at most `capacity` turns at once, running or waiting.

The generator itself serializes generation (its lock); this bound keeps the line in front of that lock
short. A turn past it gets 503 with Retry-After at once instead of piling up, and shutdown can wait
for the admitted turns to end.
"""

from __future__ import annotations

import asyncio
import logging

logger = logging.getLogger(__name__)


class QueueFull(Exception):
    """Every place in the queue is taken."""


class TurnQueue:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.depth = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def admit(self) -> None:
        if self.depth >= self.capacity:
            raise QueueFull(f"{self.depth} turns are queued (api.max_queued_turns)")
        self.depth += 1
        self._idle.clear()

    def release(self) -> None:
        self.depth -= 1
        if self.depth == 0:
            self._idle.set()

    async def drain(self, timeout_s: float) -> bool:
        """Wait until no turn is admitted; False if some are still running after `timeout_s`."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        except TimeoutError:
            logger.warning("%d turns still running at shutdown", self.depth)
            return False
        return True
