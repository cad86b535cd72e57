"""Helpers for the run-queue tests: a runtime on the test database, in-process workers,
and waiting for a run's status by its events (LISTEN/NOTIFY), not by sleeping."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable
from uuid import UUID

from agent_orchestrator.runs.models import Run, RunStatus
from agent_orchestrator.runs.queue import EVENTS_CHANNEL
from agent_orchestrator.runs.runtime import RunsRuntime
from agent_orchestrator.runs.worker import WorkerOptions

WAIT_SECONDS = 30.0  # failure detection only; runs finish in well under a second


async def wait_for_status(
    runtime: RunsRuntime, run_id: UUID, statuses: Iterable[RunStatus | str], deadline: float = WAIT_SECONDS
) -> Run:
    wanted = {RunStatus(s) for s in statuses}
    sub = runtime.listener.subscribe(EVENTS_CHANNEL, key=str(run_id))
    try:
        end = time.monotonic() + deadline
        while True:
            run = await runtime.queue.get(run_id)
            assert run is not None, f"run {run_id} vanished"
            if run.status in wanted:
                return run
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"run {run_id} is {run.status} (error={run.error}), wanted {wanted}")
            await sub.wait(left)
    finally:
        sub.close()


async def wait_for_event(
    runtime: RunsRuntime, run_id: UUID, kind: str, deadline: float = WAIT_SECONDS
) -> None:
    sub = runtime.listener.subscribe(EVENTS_CHANNEL, key=str(run_id))
    try:
        end = time.monotonic() + deadline
        while True:
            events = await runtime.queue.events_after(run_id, 0, limit=10_000)
            if any(e.kind == kind for e in events):
                return
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"run {run_id} had no {kind!r} event: {[e.kind for e in events]}")
            await sub.wait(left)
    finally:
        sub.close()


@contextlib.asynccontextmanager
async def running_workers(
    runtime: RunsRuntime, count: int = 1, **options: object
) -> AsyncIterator[list[asyncio.Task[None]]]:
    stop = asyncio.Event()
    opts = {"concurrency": 2, "lease_seconds": 5.0, "retry_base_seconds": 0.1, **options}
    tasks = [
        asyncio.create_task(runtime.worker(WorkerOptions(**opts), worker_id=f"w{i}").run(stop))  # type: ignore[arg-type]
        for i in range(count)
    ]
    try:
        yield tasks
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
