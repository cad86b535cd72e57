"""Run workers: claim runs from the queue and execute their graphs with the Postgres checkpointer.

A worker sleeps until something can be claimed: a NOTIFY on `devtools_runs` (a run
was queued, resumed or retried) or a timer to the next known due time (a future
``not_before`` or a lease expiry) - never a fixed poll. Each claimed run executes in
a task of its own with a keep-alive that renews the lease every third of its length.
A lost lease (another worker took over) stops the execution without touching the
row; a requested cancel stops it and marks the run cancelled.

The graph's thread id is the run id, so a run claimed after its worker died starts
from its last checkpoint: invoked with ``None`` on an existing thread, LangGraph
re-runs only the step that did not complete. Steps are checkpointed with
``durability="sync"`` (the checkpoint is written before the next step starts),
which `effects.once` relies on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from langgraph.types import Command
from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError

from agent_orchestrator.runs import metrics
from agent_orchestrator.runs.checkpointing import run_config, saver_for_run
from agent_orchestrator.runs.context import RunContext, running
from agent_orchestrator.runs.errors import TRANSIENT_ERRORS, RunFailed
from agent_orchestrator.runs.jsonable import jsonable, preview
from agent_orchestrator.runs.models import Run
from agent_orchestrator.runs.notify import Listener
from agent_orchestrator.runs.queue import RUNS_CHANNEL, RunQueue
from agent_orchestrator.runs.workflow_table import UnknownWorkflow, WorkflowTable, default_workflows

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 300.0
DB_RETRY_SECONDS = 1.0


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class WorkerOptions:
    concurrency: int = 4
    lease_seconds: float = 30.0
    queues: list[str] | None = None
    retry_base_seconds: float = 2.0
    shutdown_grace_seconds: float = 10.0


class _LeaseLost(Exception):
    """Another worker holds the run now: stop without touching it."""


class _Cancelled(Exception):
    """A cancel was requested while the run was executing."""


class Worker:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        checkpoint_pool: AsyncConnectionPool,
        listener: Listener,
        *,
        workflows: WorkflowTable | None = None,
        options: WorkerOptions | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.queue = RunQueue(pool)
        self.pool = pool
        self.checkpoint_pool = checkpoint_pool
        self.listener = listener
        self.workflows = workflows or default_workflows
        self.options = options or WorkerOptions()
        self.worker_id = worker_id or new_worker_id()
        self._wake = asyncio.Event()
        # Set while the worker waits with a free slot and no timer: only a NOTIFY (or a freed
        # slot, or stop) can wake it then. Observable, so a test can prove the wake-up.
        self.idle_without_timer = asyncio.Event()
        self._tasks: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._runs: dict[uuid.UUID, Run] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and execute runs until `stop` is set; then finish or hand back what is in flight."""
        sub = self.listener.subscribe(RUNS_CHANNEL, event=self._wake)
        stop_waiter = asyncio.create_task(stop.wait())
        log.info("worker started", extra={"worker": self.worker_id, "concurrency": self.options.concurrency})
        try:
            while not stop.is_set():
                self._wake.clear()
                timeout: float | None = None
                try:
                    await self._fill_slots()
                    if len(self._tasks) < self.options.concurrency:
                        due = await self.queue.seconds_until_next_due(self.options.queues)
                        # A timer to the next known due time; a margin so the row is due when we look.
                        timeout = None if due is None else max(due, 0.0) + 0.02
                except psycopg.Error as exc:
                    # The database is unreachable: nothing can be claimed; try again shortly.
                    log.warning("claim failed", extra={"worker": self.worker_id, "error": str(exc)})
                    timeout = DB_RETRY_SECONDS
                if timeout is None and len(self._tasks) < self.options.concurrency:
                    self.idle_without_timer.set()
                wake_waiter = asyncio.create_task(self._wake.wait())
                await asyncio.wait({wake_waiter, stop_waiter}, timeout=timeout, return_when="FIRST_COMPLETED")
                wake_waiter.cancel()
                self.idle_without_timer.clear()
        finally:
            sub.close()
            stop_waiter.cancel()
            await self._shutdown()

    async def _fill_slots(self) -> None:
        while len(self._tasks) < self.options.concurrency:
            run = await self.queue.claim(self.worker_id, self.options.lease_seconds, self.options.queues)
            if run is None:
                return
            metrics.RUNS_CLAIMED.labels(run.workflow).inc()
            self._runs[run.id] = run
            task = asyncio.create_task(self.execute(run), name=f"run-{run.id}")
            self._tasks[run.id] = task
            task.add_done_callback(lambda _t, rid=run.id: self._done(rid))

    def _done(self, run_id: uuid.UUID) -> None:
        self._tasks.pop(run_id, None)
        self._runs.pop(run_id, None)
        self._wake.set()  # a slot is free: look for more work

    async def _shutdown(self) -> None:
        if not self._tasks:
            return
        _done, pending = await asyncio.wait(
            set(self._tasks.values()), timeout=self.options.shutdown_grace_seconds
        )
        for run_id, task in list(self._tasks.items()):
            if task in pending:
                run = self._runs.get(run_id)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                if run is not None:
                    await self.queue.release(run, self.worker_id)

    async def execute(self, run: Run) -> None:
        """Execute one claimed run to its next resting state (succeeded, failed, interrupted, cancelled)."""
        started = time.monotonic()
        metrics.RUNS_IN_FLIGHT.inc()
        outcome = "error"
        try:
            outcome = await self._execute(run)
        finally:
            metrics.RUNS_IN_FLIGHT.dec()
            metrics.RUNS_FINISHED.labels(run.workflow, outcome).inc()
            metrics.RUN_EXECUTION_SECONDS.labels(run.workflow).observe(time.monotonic() - started)

    async def _execute(self, run: Run) -> str:
        graph_task = asyncio.create_task(self._drive_graph(run))
        keepalive = asyncio.create_task(self._keep_lease(run, graph_task))
        try:
            return await graph_task
        except asyncio.CancelledError:
            reason = keepalive.result() if keepalive.done() and not keepalive.cancelled() else None
            if reason == "lost":
                metrics.LEASES_LOST.inc()
                log.warning("lease lost; another worker owns the run", extra={"run_id": str(run.id)})
                return "lease_lost"
            if reason == "cancel":
                await self.queue.mark_cancelled(run, self.worker_id)
                return "cancelled"
            raise
        except Exception as exc:  # the graph failed: record it (retry when transient)
            return await self._record_failure(run, exc)
        finally:
            keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await keepalive

    async def _keep_lease(self, run: Run, graph_task: asyncio.Task[str]) -> str:
        interval = self.options.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                state = await self.queue.renew(run, self.worker_id, self.options.lease_seconds)
            except psycopg.Error as exc:
                # The database is unreachable: keep trying; if the lease runs out meanwhile,
                # the next renewal reports it lost and another worker has taken over.
                log.warning("lease renewal failed", extra={"run_id": str(run.id), "error": str(exc)})
                continue
            if state is None or state is True:
                graph_task.cancel()
                return "lost" if state is None else "cancel"

    async def _record_failure(self, run: Run, exc: Exception) -> str:
        error = f"{type(exc).__name__}: {exc}"
        retry_in: float | None = None
        if isinstance(exc, TRANSIENT_ERRORS):
            retry_in = min(self.options.retry_base_seconds * 2**run.failures, MAX_BACKOFF_SECONDS)
        if isinstance(exc, RunFailed):
            # An expected outcome (the report is in the state): one line, no traceback.
            log.warning("run failed: %s", exc, extra={"run_id": str(run.id), "workflow": run.workflow})
        else:
            log.warning(
                "run execution failed",
                extra={"run_id": str(run.id), "error": error, "retry_in": retry_in},
                exc_info=not isinstance(exc, (*TRANSIENT_ERRORS, UnknownWorkflow, ValidationError)),
            )
        status = await self.queue.fail(run, self.worker_id, error[:4000], retry_in)
        return "retry" if status == "queued" else "failed"

    async def _drive_graph(self, run: Run) -> str:
        spec = self.workflows.get(run.workflow)
        saver = saver_for_run(self.checkpoint_pool)
        graph = spec.graph().compile(checkpointer=saver)
        config = run_config(str(run.id))
        if spec.recursion_limit is not None:
            config["recursion_limit"] = spec.recursion_limit
        ctx = RunContext(run.id, run.workflow, run.attempts, self.worker_id, self.pool)
        graph_input: Any
        if await saver.aget_tuple(config) is None:
            # The input is validated again (it may check the disk, e.g. a repository): off the loop.
            graph_input = await asyncio.to_thread(spec.start_state, run.input, str(run.id))
        else:
            pending = (await graph.aget_state(config)).interrupts
            if run.resume is not None and pending:
                # Several interrupts wait at once (parallel branches): the decision goes to each.
                graph_input = Command(resume={i.id: run.resume for i in pending})
            else:
                graph_input = None  # continue from the last checkpoint
        node_started: dict[str, float] = {}
        with running(ctx):
            async for mode, chunk in graph.astream(
                graph_input, config, stream_mode=["tasks"], durability="sync"
            ):
                if mode == "tasks":
                    await self._task_event(run, chunk, node_started)
        snapshot = await graph.aget_state(config)
        if snapshot.interrupts:
            payload = [{"id": i.id, "value": jsonable(i.value)} for i in snapshot.interrupts]
            await self.queue.interrupt(run, self.worker_id, payload)
            return "interrupted"
        if snapshot.next:
            # Stopped before nodes that still have to run (a static interrupt_before): wait for a resume.
            waiting = [{"id": None, "value": {"next": list(snapshot.next)}}]
            await self.queue.interrupt(run, self.worker_id, waiting)
            return "interrupted"
        await self.queue.finish(run, self.worker_id, jsonable(snapshot.values))
        return "succeeded"

    async def _task_event(self, run: Run, chunk: dict[str, Any], started: dict[str, float]) -> None:
        name = str(chunk.get("name"))
        if name.startswith("__"):
            return
        task_id = str(chunk.get("id"))
        if "input" in chunk:
            started[task_id] = time.monotonic()
            await self.queue.add_event(run.id, "node_started", name, {"task": task_id})
            return
        elapsed = time.monotonic() - started.pop(task_id, time.monotonic())
        metrics.RUN_NODE_SECONDS.labels(run.workflow, name).observe(elapsed)
        data: dict[str, Any] = {"task": task_id, "seconds": round(elapsed, 4)}
        if chunk.get("error") is not None:
            data["error"] = f"{type(chunk['error']).__name__}: {chunk['error']}"
            await self.queue.add_event(run.id, "node_failed", name, data)
            return
        if chunk.get("interrupts"):
            data["interrupts"] = jsonable(chunk["interrupts"])
            await self.queue.add_event(run.id, "node_interrupted", name, data)
            return
        data["update"] = preview(chunk.get("result"))
        await self.queue.add_event(run.id, "node_finished", name, data)
