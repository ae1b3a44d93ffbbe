"""Conversation memory: the LangGraph checkpointer chosen by `agent.checkpointer`.

- sqlite (default): one file, survives restarts; fine for one service process.
- postgres: several replicas share one memory (`pip install 'aligned-rag[postgres]'`).
- memory: in-process only, lost on restart (tests, demos).
The service streams with `astream`, so the async savers are used (SqliteSaver is sync only).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING

from configs.settings import AgentSettings, ConfigError

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

logger = logging.getLogger(__name__)

# Project types stored in checkpoints (beside LangChain messages and builtins, which are allowed anyway).
# An explicit list means a tampered checkpoint database cannot make the loader build arbitrary objects.
CHECKPOINT_TYPES = [("agents.safety.verdict", "Verdict")]


def checkpoint_serde() -> JsonPlusSerializer:
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    return JsonPlusSerializer(allowed_msgpack_modules=CHECKPOINT_TYPES)


@asynccontextmanager
async def open_checkpointer(settings: AgentSettings) -> AsyncIterator[BaseCheckpointSaver]:
    """Open the configured checkpointer for the lifetime of the block (closes its connection after)."""
    if settings.checkpointer == "memory":
        from langgraph.checkpoint.memory import InMemorySaver

        yield InMemorySaver(serde=checkpoint_serde())
    elif settings.checkpointer == "sqlite":
        import aiosqlite
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        settings.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        async with aiosqlite.connect(settings.sqlite_path) as connection:
            saver = AsyncSqliteSaver(connection, serde=checkpoint_serde())
            await saver.setup()
            logger.info("conversation memory: sqlite %s", settings.sqlite_path)
            yield saver
    else:
        async with _postgres_saver(settings) as saver:
            yield saver


@asynccontextmanager
async def _postgres_saver(settings: AgentSettings) -> AsyncIterator[BaseCheckpointSaver]:
    if not settings.postgres_url:
        raise ConfigError("agent.checkpointer is 'postgres' but agent.postgres_url is not set")
    try:
        import psycopg
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    except ImportError as exc:
        raise ConfigError(
            "agent.checkpointer 'postgres' needs the postgres extra: pip install 'aligned-rag[postgres]'"
        ) from exc
    location = _postgres_location(settings.postgres_url)
    async with AsyncExitStack() as stack:
        # Only opening and setting up is translated: errors of later queries are the caller's to see.
        try:
            saver = await stack.enter_async_context(
                AsyncPostgresSaver.from_conn_string(settings.postgres_url, serde=checkpoint_serde())
            )
            await saver.setup()  # creates the checkpoint tables on first use; idempotent
        except psycopg.OperationalError as exc:
            raise ConfigError(
                f"cannot open conversation memory at postgres {location} (agent.postgres_url): {_first_line(exc)}"
            ) from exc
        logger.info("conversation memory: postgres %s", location)
        yield saver


def _postgres_location(url: str) -> str:
    """host:port/database of agent.postgres_url, for messages and logs: never its password."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(url)
    except ProgrammingError:
        # `from None`: psycopg's message may quote a piece of the URL, password included.
        raise ConfigError(
            "agent.postgres_url is not a PostgreSQL URL; expected postgresql://USER:PASSWORD@HOST:5432/DATABASE"
        ) from None
    return f"{params.get('host', 'localhost')}:{params.get('port', 5432)}/{params.get('dbname', '')}"


def _first_line(exc: Exception) -> str:
    # libpq's reason ("Connection refused", "password authentication failed ..."); it never quotes the password.
    return str(exc).strip().splitlines()[0]
