"""Calls from concurrent threads served by one call of a batch function.

Under load every turn of a service process runs its own encoder forwards: the request check, the retrieval
query, the answer check. On a GPU a MiniLM forward takes about as long for one text as for thirty (kernel
launches, not arithmetic), and each forward also waits its turn beside the generation engine. So the callers
that arrive while a forward runs wait for it to end and then go together in the next one. A caller that finds
the encoder idle runs at once: nothing waits for company, so a lone request costs what it did before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class _Call(Generic[Item, Result]):
    item: Item
    done: threading.Event = field(default_factory=threading.Event)
    leads: bool = False  # this caller runs the next batch (for everyone waiting then)
    result: Result | None = None
    error: BaseException | None = None


class Coalescer(Generic[Item, Result]):
    """`coalescer(item)` returns `run(items)[i]` for its own item, where `items` are those of every caller
    waiting when a batch starts. `run` gets one list at a time: at most one batch runs at once."""

    def __init__(self, run: Callable[[list[Item]], list[Result]]) -> None:
        self._run = run
        self._lock = threading.Lock()
        self._waiting: list[_Call[Item, Result]] = []
        self._busy = False

    def __call__(self, item: Item) -> Result:
        call: _Call[Item, Result] = _Call(item)
        with self._lock:
            self._waiting.append(call)
            call.leads = not self._busy
            self._busy = True
        if not call.leads:
            call.done.wait()  # set when the result is in, or when this caller is to lead the next batch
        if call.leads:
            self._run_waiting()
        if call.error is not None:
            raise call.error
        return call.result  # type: ignore[return-value]

    def _run_waiting(self) -> None:
        with self._lock:
            batch, self._waiting = self._waiting, []
        try:
            results = self._run([call.item for call in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} inputs gave {len(results)} results")
            for call, result in zip(batch, results, strict=True):
                call.result = result
        except BaseException as exc:  # noqa: BLE001 -- handed to every caller of the batch, who re-raises it
            for call in batch:
                call.error = exc
        self._hand_over(batch)

    def _hand_over(self, batch: list[_Call[Item, Result]]) -> None:
        with self._lock:
            if self._waiting:  # those who came meanwhile: the first of them runs their batch
                self._waiting[0].leads = True
                self._waiting[0].done.set()
            else:
                self._busy = False
        for call in batch:
            call.leads = False
            call.done.set()
