"""A stream that falls behind the continuous-batching engine reads only the newest of its waiting outputs."""

from __future__ import annotations

import queue

from transformers.generation.continuous_batching.requests import GenerationOutput, RequestStatus

from agents.continuous_generator import _latest_output


def output(tokens: list[int], status: RequestStatus = RequestStatus.DECODING, error: str | None = None):
    return GenerationOutput(request_id="turn-0", generated_tokens=tokens, status=status, error=error)


def waiting(*outputs: GenerationOutput) -> queue.Queue[GenerationOutput]:
    outputs_queue: queue.Queue[GenerationOutput] = queue.Queue()
    for item in outputs:
        outputs_queue.put(item)
    return outputs_queue


def test_the_newest_waiting_output_is_read_and_the_older_ones_skipped():
    outputs = waiting(output([1]), output([1, 2]), output([1, 2, 3]))
    assert _latest_output(outputs, "turn-0").generated_tokens == [1, 2, 3]
    assert outputs.empty()


def test_reading_stops_at_the_final_output():
    final = output([1, 2], RequestStatus.FINISHED)
    outputs = waiting(output([1]), final, output([9]))  # nothing after the end is this stream's
    assert _latest_output(outputs, "turn-0") is final
    assert outputs.qsize() == 1


def test_an_error_is_not_skipped():
    failed = output([1], RequestStatus.FAILED, error="out of cache blocks")
    outputs = waiting(failed, output([1, 2]))
    assert _latest_output(outputs, "turn-0").error == "out of cache blocks"
