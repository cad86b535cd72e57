"""The run queue's operations: thin async wrappers over the stored procedures of
config/state/040_runs.sql. Every statement is one autocommit transaction.

Calls a worker makes about a run it holds carry (worker, attempt): the procedures
only act while that pair still holds the lease, so a worker that lost its lease
(paused, partitioned) cannot finish, fail or interrupt a run another worker now owns.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from agent_orchestrator.runs.models import DEFAULT_QUEUE, Run, RunEvent, RunStatus

RUNS_CHANNEL = "devtools_runs"
EVENTS_CHANNEL = "devtools_run_events"

ENQUEUE_SQL = """
SELECT * FROM enqueue_run(
    p_workflow => %(workflow)s, p_input => %(input)s, p_priority => %(priority)s,
    p_not_before => %(not_before)s, p_created_by => %(created_by)s, p_queue => %(queue)s,
    p_max_attempts => %(max_attempts)s, p_parent_run_id => %(parent_run_id)s,
    p_forked_from_checkpoint => %(forked_from_checkpoint)s, p_id => %(id)s)
"""
CLAIM_SQL = "SELECT * FROM claim_run(%s, %s, %s)"
RENEW_SQL = "SELECT renew_run_lease(%s, %s, %s, %s) AS cancel_requested"
FINISH_SQL = "SELECT finish_run(%s, %s, %s, %s) AS ok"
FAIL_SQL = "SELECT fail_run(%s, %s, %s, %s, %s) AS status"
INTERRUPT_SQL = "SELECT interrupt_run(%s, %s, %s, %s) AS ok"
RESUME_SQL = "SELECT * FROM resume_run(%s, %s, %s)"
CANCEL_SQL = "SELECT * FROM cancel_run(%s, %s)"
RELEASE_SQL = "SELECT release_run(%s, %s, %s) AS ok"
MARK_CANCELLED_SQL = "SELECT mark_run_cancelled(%s, %s, %s) AS ok"
NEXT_WAKEUP_SQL = "SELECT next_run_wakeup(%s) AS at, now() AS now"
ADD_EVENT_SQL = "SELECT add_run_event(%s, %s, %s, %s) AS id"
GET_SQL = "SELECT * FROM runs WHERE id = %s"
EVENTS_AFTER_SQL = "SELECT * FROM run_events WHERE run_id = %s AND id > %s ORDER BY id LIMIT %s"
LIST_SQL = """
SELECT * FROM runs
WHERE (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(workflow)s::text IS NULL OR workflow = %(workflow)s)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s)
ORDER BY created_at DESC, id
LIMIT %(limit)s OFFSET %(offset)s
"""


class RunQueue:
    """The durable queue, over the project pool (autocommit, dict rows)."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def _one(self, sql: str, params: Any) -> dict[str, Any] | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql, params)
            return await cur.fetchone()  # type: ignore[return-value]

    async def enqueue(
        self,
        workflow: str,
        input: dict[str, Any],
        *,
        priority: int = 0,
        not_before: datetime | None = None,
        created_by: str | None = None,
        queue: str = DEFAULT_QUEUE,
        max_attempts: int = 3,
        parent_run_id: UUID | None = None,
        forked_from_checkpoint: str | None = None,
        run_id: UUID | None = None,
    ) -> Run:
        row = await self._one(
            ENQUEUE_SQL,
            {
                "workflow": workflow,
                "input": Jsonb(input),
                "priority": priority,
                "not_before": not_before,
                "created_by": created_by,
                "queue": queue,
                "max_attempts": max_attempts,
                "parent_run_id": parent_run_id,
                "forked_from_checkpoint": forked_from_checkpoint,
                "id": run_id,
            },
        )
        assert row is not None
        return Run.model_validate(row)

    async def claim(self, worker: str, lease_seconds: float, queues: list[str] | None = None) -> Run | None:
        row = await self._one(CLAIM_SQL, (worker, lease_seconds, queues))
        return Run.model_validate(row) if row else None

    async def renew(self, run: Run, worker: str, lease_seconds: float) -> bool | None:
        """True/False: lease extended (and whether cancel was requested); None: the lease is lost."""
        row = await self._one(RENEW_SQL, (run.id, worker, run.attempts, lease_seconds))
        return None if row is None else row["cancel_requested"]

    async def finish(self, run: Run, worker: str, result: Any) -> bool:
        row = await self._one(FINISH_SQL, (run.id, worker, run.attempts, Jsonb(result)))
        return bool(row and row["ok"])

    async def fail(self, run: Run, worker: str, error: str, retry_in: float | None = None) -> str | None:
        """'queued' (retry due after `retry_in` seconds), 'failed', or None when fenced out."""
        row = await self._one(FAIL_SQL, (run.id, worker, run.attempts, error, retry_in))
        return row["status"] if row else None

    async def interrupt(self, run: Run, worker: str, payload: Any) -> bool:
        row = await self._one(INTERRUPT_SQL, (run.id, worker, run.attempts, Jsonb(payload)))
        return bool(row and row["ok"])

    async def release(self, run: Run, worker: str) -> bool:
        """Hand a held run back to the queue (worker shutdown); resumed later from its checkpoint."""
        row = await self._one(RELEASE_SQL, (run.id, worker, run.attempts))
        return bool(row and row["ok"])

    async def mark_cancelled(self, run: Run, worker: str) -> bool:
        row = await self._one(MARK_CANCELLED_SQL, (run.id, worker, run.attempts))
        return bool(row and row["ok"])

    async def resume(self, run_id: UUID, decision: Any, by: str) -> Run | None:
        """Queue an interrupted run again with a decision; None when it is not interrupted."""
        row = await self._one(RESUME_SQL, (run_id, Jsonb(decision), by))
        return Run.model_validate(row) if row else None

    async def cancel(self, run_id: UUID, by: str) -> Run | None:
        """Cancel (queued/interrupted) or flag for cancel (running); None when already finished/absent."""
        row = await self._one(CANCEL_SQL, (run_id, by))
        return Run.model_validate(row) if row else None

    async def get(self, run_id: UUID) -> Run | None:
        row = await self._one(GET_SQL, (run_id,))
        return Run.model_validate(row) if row else None

    async def list_runs(
        self,
        *,
        status: RunStatus | None = None,
        workflow: str | None = None,
        queue: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Run]:
        params = {
            "status": status.value if status else None,
            "workflow": workflow,
            "queue": queue,
            "limit": limit,
            "offset": offset,
        }
        async with self.pool.connection() as conn:
            cur = await conn.execute(LIST_SQL, params)
            return [Run.model_validate(r) for r in await cur.fetchall()]

    async def add_event(self, run_id: UUID, kind: str, node: str | None, data: dict[str, Any]) -> int:
        row = await self._one(ADD_EVENT_SQL, (run_id, kind, node, Jsonb(data)))
        assert row is not None
        return int(row["id"])

    async def events_after(self, run_id: UUID, after_id: int, limit: int = 500) -> list[RunEvent]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(EVENTS_AFTER_SQL, (run_id, after_id, limit))
            return [RunEvent.model_validate(r) for r in await cur.fetchall()]

    async def seconds_until_next_due(self, queues: list[str] | None = None) -> float | None:
        """Seconds until a queued run comes due or a lease expires (<= 0: now); None: nothing pending."""
        row = await self._one(NEXT_WAKEUP_SQL, (queues,))
        if row is None or row["at"] is None:
            return None
        return (row["at"] - row["now"]).total_seconds()
