"""The service's lifetime state: the agent once it has loaded (or why it failed to), the accepted keys,
the rate limiter, the turn queue and the metrics."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

from agents.chat import ChatAgent
from api.auth import KeyStore
from api.metrics import ServiceMetrics
from api.ratelimit import RateLimiter
from api.turns import TurnQueue
from configs.settings import AppSettings

logger = logging.getLogger(__name__)

# Builds the agent; whatever it opens (memory, connections) goes on the stack, closed at shutdown.
AgentStarter = Callable[[AppSettings, AsyncExitStack], Awaitable[ChatAgent]]


async def start_agent(settings: AppSettings, stack: AsyncExitStack) -> ChatAgent:
    """Load the models, ensure the starter knowledge base, open memory, compile the graph."""
    from agents.parts import load_parts
    from agents.runtime import open_agent
    from ingest.starter import ensure_starter_kb

    parts = await asyncio.to_thread(load_parts, settings)
    stack.callback(parts.generator.close)  # after the memory closes (LIFO): no turn is generating by then
    if settings.ingest.ingest_starter_on_startup:
        # Through the retriever's store: a second Chroma client on the same directory can hang.
        await asyncio.to_thread(ensure_starter_kb, settings, store=parts.retriever.store)
    return await stack.enter_async_context(open_agent(settings, parts))


class ServiceState:
    """Loads the agent in the background, so /healthz answers while the models load."""

    def __init__(self, settings: AppSettings, starter: AgentStarter, keys: KeyStore) -> None:
        self.settings = settings
        self.keys = keys
        self.agent: ChatAgent | None = None
        self.failure: str | None = None
        self.rate_limiter = RateLimiter(settings.api.rate_limit_per_minute)
        self.turns = TurnQueue(settings.api.max_queued_turns)
        self.metrics = ServiceMetrics(lambda: self.agent.generation_stats if self.agent else None)
        self.metrics.queue_capacity.set(settings.api.max_queued_turns)
        self._starter = starter
        self._stack = AsyncExitStack()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._load(), name="load-agent")

    async def _load(self) -> None:
        started = time.perf_counter()
        try:
            self.agent = await self._starter(self.settings, self._stack)
        except Exception as exc:
            self.failure = f"{type(exc).__name__}: {exc}"
            logger.exception("the agent failed to load; /readyz stays 503")
            return
        logger.info("ready", extra={"startup_s": round(time.perf_counter() - started, 2)})

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        # uvicorn has let in-flight requests finish or cancelled them (api.shutdown_grace_s); a cancelled
        # turn still tidies its thread, so wait for that before closing the memory under it.
        await self.turns.drain(timeout_s=5.0)
        await self._stack.aclose()
