"""Concurrent callers share one batch call: a lone caller runs at once, those arriving meanwhile go together next,
each gets its own result, and an error reaches exactly the callers of its batch."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from retrieval.coalesce import Coalescer


class GatedRun:
    """A batch function that records its batches and holds the first one until `release` is set."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        self.fail_on = fail_on

    def __call__(self, items: list[str]) -> list[str]:
        self.batches.append(list(items))
        if len(self.batches) == 1:
            self.started.set()
            assert self.release.wait(10)
        if self.fail_on in items:
            raise ValueError(f"cannot encode {self.fail_on}")
        return [item.upper() for item in items]


def wait_until(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_a_lone_caller_runs_at_once_with_its_own_item() -> None:
    run = GatedRun()
    run.release.set()
    coalescer = Coalescer(run)
    assert coalescer("a") == "A"
    assert coalescer("b") == "B"
    assert run.batches == [["a"], ["b"]]


def test_callers_arriving_during_a_batch_go_together_in_the_next() -> None:
    run = GatedRun()
    coalescer = Coalescer(run)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(coalescer, "a")
        assert run.started.wait(10)
        later = []
        for queued, item in enumerate(["b", "c", "d"], start=1):
            later.append(pool.submit(coalescer, item))
            wait_until(lambda queued=queued: len(coalescer._waiting) == queued)  # queued in this order
        run.release.set()
        assert first.result(10) == "A"
        assert [future.result(10) for future in later] == ["B", "C", "D"]
    assert run.batches == [["a"], ["b", "c", "d"]]


def test_an_error_reaches_the_callers_of_its_batch_and_the_next_batch_runs() -> None:
    run = GatedRun(fail_on="c")
    coalescer = Coalescer(run)
    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(coalescer, "a")
        assert run.started.wait(10)
        failing = [pool.submit(coalescer, "b")]
        wait_until(lambda: len(coalescer._waiting) == 1)
        failing.append(pool.submit(coalescer, "c"))
        wait_until(lambda: len(coalescer._waiting) == 2)
        run.release.set()
        assert first.result(10) == "A"
        for future in failing:
            with pytest.raises(ValueError, match="cannot encode c"):
                future.result(10)
    assert coalescer("e") == "E"  # not stuck: the next caller leads again


def test_a_batch_function_must_give_one_result_per_input() -> None:
    coalescer = Coalescer(lambda items: items[:-1])
    with pytest.raises(RuntimeError, match="1 inputs gave 0 results"):
        coalescer("a")
    assert Coalescer(lambda items: items)("b") == "b"


def test_many_threads_each_get_their_own_result() -> None:
    coalescer = Coalescer(lambda items: [item * 2 for item in items])
    with ThreadPoolExecutor(16) as pool:
        assert list(pool.map(coalescer, range(500))) == [item * 2 for item in range(500)]
