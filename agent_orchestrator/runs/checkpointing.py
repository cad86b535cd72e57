"""Postgres checkpointing for LangGraph runs: `AsyncPostgresSaver` on the project database.

The thread id of every run is its run id, so a run's checkpoints are found by the run.
The saver's tables (checkpoints, checkpoint_blobs, checkpoint_writes,
checkpoint_migrations) are created by the library's own migrations through
`setup()`, called once at startup; we never copy its DDL into config/state.

The saver needs connections with autocommit, ``prepare_threshold=0`` (its
statements must not be server-side prepared, which also keeps it safe behind
pgbouncer) and ``dict_row`` rows, so it gets a pool of its own rather than the
project pool of `shared.db.open_pool`.

`AsyncPostgresSaver` serializes its own calls with an asyncio lock per instance;
`saver_for_run()` hands each concurrent run a saver of its own over the shared
pool so runs in one process do not queue behind each other.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

CHECKPOINT_TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")


def saver_connection_kwargs(application_name: str = "devtools-checkpoints") -> dict[str, Any]:
    """The connection settings `AsyncPostgresSaver` requires (see its `from_conn_string`)."""
    return {
        "autocommit": True,
        "prepare_threshold": 0,
        "row_factory": dict_row,
        "application_name": application_name,
    }


async def open_checkpoint_pool(
    database_url: str, *, min_size: int = 1, max_size: int = 10, name: str = "devtools-checkpoints"
) -> AsyncConnectionPool:
    pool = AsyncConnectionPool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        kwargs=saver_connection_kwargs(name),
        open=False,
        name=name,
        check=AsyncConnectionPool.check_connection,  # a dropped connection is replaced, not used
    )
    await pool.open(wait=True, timeout=30)
    return pool


# Serializes `setup()` across processes: two workers starting together would both
# insert the same row into checkpoint_migrations.
SETUP_LOCK_KEY = 0x6C67_6370  # "lgcp"


async def setup_checkpointer(pool: AsyncConnectionPool) -> AsyncPostgresSaver:
    """Create or upgrade the saver's tables (the library's migrations; idempotent) and return a saver."""
    saver = AsyncPostgresSaver(pool)  # type: ignore[arg-type]
    async with pool.connection() as lock_conn:
        await lock_conn.execute("SELECT pg_advisory_lock(%s)", (SETUP_LOCK_KEY,))
        try:
            await saver.setup()
        finally:
            await lock_conn.execute("SELECT pg_advisory_unlock(%s)", (SETUP_LOCK_KEY,))
    log.info("checkpointer ready")
    return saver


def saver_for_run(pool: AsyncConnectionPool) -> AsyncPostgresSaver:
    """A saver of one run's own over the shared pool (its internal lock then covers only that run)."""
    return AsyncPostgresSaver(pool)  # type: ignore[arg-type]


def run_config(run_id: str, *, checkpoint_id: str | None = None, **configurable: Any) -> RunnableConfig:
    """The LangGraph config of a run: thread id = run id (plus a checkpoint to read or fork from)."""
    values: dict[str, Any] = {"thread_id": str(run_id), "run_id": str(run_id), **configurable}
    if checkpoint_id is not None:
        values["checkpoint_id"] = checkpoint_id
    return {"configurable": values}


def run_id_from_config(config: RunnableConfig) -> str:
    """The run a node executes in, from the config LangGraph passes to nodes."""
    configurable = config.get("configurable") or {}
    run_id = configurable.get("run_id") or configurable.get("thread_id")
    if not run_id:
        raise ValueError("config has no run_id/thread_id: the graph is not running as a durable run")
    return str(run_id)


@asynccontextmanager
async def checkpointer(database_url: str, *, max_size: int = 10) -> AsyncIterator[AsyncPostgresSaver]:
    """A ready saver with a pool of its own, for scripts and tests: ``async with checkpointer(url) as s``."""
    pool = await open_checkpoint_pool(database_url, max_size=max_size)
    try:
        yield await setup_checkpointer(pool)
    finally:
        await pool.close()
