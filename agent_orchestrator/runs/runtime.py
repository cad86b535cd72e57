"""What a process needs to serve runs: the project pool, the checkpoint pool (with the
saver's tables set up), and the LISTEN connection. Shared by the HTTP app and workers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from psycopg_pool import AsyncConnectionPool

from agent_orchestrator.runs.checkpointing import open_checkpoint_pool, setup_checkpointer
from agent_orchestrator.runs.notify import Listener
from agent_orchestrator.runs.queue import EVENTS_CHANNEL, RUNS_CHANNEL, RunQueue
from agent_orchestrator.runs.worker import Worker, WorkerOptions
from agent_orchestrator.runs.workflow_table import WorkflowTable, default_workflows
from shared.db import open_pool


@dataclass
class RunsRuntime:
    database_url: str
    pool: AsyncConnectionPool
    checkpoint_pool: AsyncConnectionPool
    listener: Listener
    workflows: WorkflowTable
    queue: RunQueue = field(init=False)

    def __post_init__(self) -> None:
        self.queue = RunQueue(self.pool)

    @classmethod
    async def open(
        cls,
        database_url: str,
        *,
        workflows: WorkflowTable | None = None,
        pool_max: int = 10,
        name: str = "devtools-runs",
    ) -> RunsRuntime:
        pool = await open_pool(database_url, min_size=1, max_size=pool_max, name=name)
        checkpoint_pool = await open_checkpoint_pool(
            database_url, min_size=1, max_size=pool_max, name=f"{name}-checkpoints"
        )
        await setup_checkpointer(checkpoint_pool)
        listener = Listener(database_url, [RUNS_CHANNEL, EVENTS_CHANNEL], name=f"{name}-listen")
        await listener.start()
        return cls(database_url, pool, checkpoint_pool, listener, workflows or default_workflows)

    def worker(self, options: WorkerOptions | None = None, worker_id: str | None = None) -> Worker:
        return Worker(
            self.pool,
            self.checkpoint_pool,
            self.listener,
            workflows=self.workflows,
            options=options,
            worker_id=worker_id,
        )

    async def close(self) -> None:
        await self.listener.stop()
        await asyncio.gather(self.pool.close(), self.checkpoint_pool.close())
