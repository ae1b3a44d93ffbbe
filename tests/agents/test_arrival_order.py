"""Turns take a one-at-a-time model in the order they came (agents.arrival_order)."""

import asyncio

from agents.arrival_order import ArrivalOrder


async def started_after(order: ArrivalOrder, earlier_leave_after: list[float]) -> list[str]:
    """Each earlier turn ends after its delay; what happened, in order, around the last turn's wait."""
    events: list[str] = []
    earlier = [order.arrive() for _ in earlier_leave_after]
    last = order.arrive()

    async def end(index: int, delay: float) -> None:
        await asyncio.sleep(delay)
        events.append(f"turn {index} ended")
        earlier[index].leave()

    async def take_the_model() -> None:
        await last.earlier_turns_ended()
        events.append("last turn generates")
        last.leave()

    await asyncio.gather(take_the_model(), *(end(i, delay) for i, delay in enumerate(earlier_leave_after)))
    return events


def test_a_turn_generates_only_after_every_earlier_turn_ended():
    order = ArrivalOrder()
    events = asyncio.run(started_after(order, [0.05, 0.01]))
    assert events == ["turn 1 ended", "turn 0 ended", "last turn generates"]
    assert len(order) == 0  # every place was left


def test_turns_that_came_later_or_already_left_do_not_hold_a_turn_back():
    async def scenario() -> None:
        order = ArrivalOrder()
        gone = order.arrive()
        gone.leave()
        first = order.arrive()
        order.arrive()  # a later turn, still in progress
        await asyncio.wait_for(first.earlier_turns_ended(), timeout=1)  # TimeoutError if held back

    asyncio.run(scenario())
