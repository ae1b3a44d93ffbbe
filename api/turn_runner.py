"""One agent turn as every chat route runs it: within the generation time limit, counted in the metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence

from langchain_core.messages import AnyMessage

from agents.chat import AgentEvent, ChatAgent, DoneEvent, TurnResult
from api.errors import GenerationTimeout
from api.service import ServiceState


async def stream_turn(
    service: ServiceState, agent: ChatAgent, message: str, *, thread_id: str | None, owner: str,
    history: Sequence[AnyMessage] = (),
) -> AsyncIterator[AgentEvent]:
    """The agent's events; past api.generation_timeout_s the turn is cancelled (its thread left as it was
    before the turn) and GenerationTimeout raised."""
    limit = service.settings.api.generation_timeout_s
    started = time.perf_counter()
    events = agent.stream(message, thread_id, owner, history)
    try:
        async with asyncio.timeout(limit):
            async for event in events:
                if isinstance(event, DoneEvent):
                    service.metrics.observe_turn(event.result, time.perf_counter() - started)
                yield event
    except TimeoutError:
        service.metrics.turn_latency.labels("timeout").observe(limit)
        raise GenerationTimeout(f"the answer took longer than {limit:g} s (api.generation_timeout_s); "
                                "try a shorter question") from None
    finally:
        await events.aclose()


async def run_turn(
    service: ServiceState, agent: ChatAgent, message: str, *, thread_id: str | None, owner: str,
    history: Sequence[AnyMessage] = (),
) -> TurnResult:
    async for event in stream_turn(service, agent, message, thread_id=thread_id, owner=owner, history=history):
        if isinstance(event, DoneEvent):
            return event.result
    raise RuntimeError("the turn ended without a result")
