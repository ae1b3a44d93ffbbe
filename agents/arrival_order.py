"""Turns take a model that runs one generation at a time in the order they arrived.

With the local model on CPU one generation runs at a time, on one thread, in the order the generate nodes submit.
That was not the order the turns came in: a turn reaches its generate node only after its request check and
retrieval, whose time varies with the text, and a turn of the agentic workflow that generates twice (a stricter
retry after a failed grounding check) sent its retry behind every turn that had started waiting meanwhile: three
questions sent 0.3 s apart to the embedded default were answered second, third, first
(`tests/api/test_server.py::test_concurrent_turns_are_answered_in_the_order_they_came`). So a turn takes a place
when it arrives and leaves it when it ends, and generates only once every turn that arrived before it has ended.
Engines that batch concurrent streams (continuous batching on a GPU, a remote server) take every generation at
once and need no order.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass


class ArrivalOrder:
    """The places of the turns in progress, in the order they came; used from the event loop's thread only."""

    def __init__(self) -> None:
        self._ended: dict[int, asyncio.Event] = {}  # by place number: set when that turn ends
        self._arrivals = itertools.count()

    def arrive(self) -> Place:
        """A place for a turn that just came in; the turn must `leave` it when it ends, however it ends."""
        number = next(self._arrivals)
        self._ended[number] = asyncio.Event()
        return Place(self, number)

    async def wait_for_earlier(self, number: int) -> None:
        for ended in [event for other, event in self._ended.items() if other < number]:
            await ended.wait()

    def leave(self, number: int) -> None:
        ended = self._ended.pop(number, None)
        if ended is not None:
            ended.set()

    def __len__(self) -> int:
        return len(self._ended)


@dataclass(frozen=True)
class Place:
    """One turn's place in an ArrivalOrder."""

    order: ArrivalOrder
    number: int

    async def earlier_turns_ended(self) -> None:
        """Return once every turn that arrived before this one has ended."""
        await self.order.wait_for_earlier(self.number)

    def leave(self) -> None:
        self.order.leave(self.number)
