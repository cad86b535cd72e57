"""The task store: thin async wrappers over the stored procedures of config/state/080_tasks.sql.
Every call is one autocommit transaction; the procedures hold the rules (fencing, DAG promotion,
blocking, retry budget), this module adds the Python-side checks (specs, DAG with the cycle named)
and the retry delays (full jitter).

Fencing: calls about an attempt (assign_agent, release, start, heartbeat, complete, fail) pass the
task id and the attempt number the claim returned. They only act while that attempt holds the task,
so a late answer from an attempt that expired, was reassigned, timed out or was cancelled is
discarded: the methods answer False/None instead of raising.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from agent_orchestrator.tasks.backoff import DEFAULT_BACKOFF, Backoff
from agent_orchestrator.tasks.dag import validate_batch
from agent_orchestrator.tasks.errors import TaskArgumentError, task_error_from
from agent_orchestrator.tasks.models import (
    AgentLoad,
    AssignOutcome,
    ErrorClass,
    ErrorKind,
    PhaseSummary,
    Task,
    TaskSpec,
    TaskStatus,
)

# NOTIFY channels (see the header of 080_tasks.sql).
TASKS_CHANNEL = "devtools_tasks"  # payload: the capability of a task that became ready
TASK_UPDATES_CHANNEL = "devtools_task_updates"  # payload: the ticket id whose tasks changed status

CREATE_SQL = "SELECT * FROM create_tasks(%s, %s, %s)"
CLAIM_SQL = "SELECT * FROM claim_ready_tasks(%s, %s, %s, %s)"
ASSIGN_SQL = "SELECT assign_task_agent(%s, %s, %s, %s, %s) AS outcome"
RELEASE_SQL = "SELECT release_task(%s, %s, %s, %s) AS ok"
LOAD_SQL = "SELECT * FROM agent_task_load(%s)"
WAKEUP_SQL = "SELECT next_task_wakeup(%s) AS at, now() AS now"
START_SQL = "SELECT start_task(%s, %s, %s, %s) AS ok"
HEARTBEAT_SQL = "SELECT heartbeat_task(%s, %s, %s) AS cancel_requested"
COMPLETE_SQL = "SELECT complete_task(%s, %s, %s) AS ok"
STATUS_COUNTS_SQL = """
SELECT status, count(*)::int AS n,
       count(*) FILTER (WHERE status = 'ready' AND not_before <= now())::int AS due
FROM tasks GROUP BY status
"""
ASSIGN_MANY_SQL = "SELECT * FROM assign_task_agents(%s, %s)"
RESULTS_SQL = """
SELECT key, result FROM tasks WHERE ticket_id = %s AND phase = %s AND status = 'succeeded' AND key = ANY(%s)
"""
FAIL_SQL = "SELECT fail_task_attempt(%s, %s, %s, %s, %s, %s, %s, %s) AS status"
EXPIRE_SQL = "SELECT * FROM expire_task_leases(%s, %s)"
CANCEL_SQL = "SELECT * FROM cancel_task(%s, %s)"
CANCEL_TICKET_SQL = "SELECT * FROM cancel_ticket_tasks(%s, %s)"
RETRY_SQL = "SELECT * FROM retry_task(%s, %s)"
SUMMARY_SQL = "SELECT * FROM phase_task_summary(%s, %s)"
GET_SQL = "SELECT * FROM tasks WHERE id = %s"
LIST_SQL = """
SELECT * FROM tasks
WHERE ticket_id = %(ticket_id)s
  AND (%(phase)s::text IS NULL OR phase = %(phase)s)
  AND (%(statuses)s::text[] IS NULL OR status = ANY (%(statuses)s::text[]))
ORDER BY created_at, id
"""


class TaskStore:
    """The tasks of every ticket, over the project pool (autocommit connections).

    `backoff` is the retry policy for failures reported through `fail` and for leases that
    `expire_leases` finds expired.
    """

    def __init__(self, pool: AsyncConnectionPool, *, backoff: Backoff = DEFAULT_BACKOFF) -> None:
        self.pool = pool
        self.backoff = backoff

    @contextlib.asynccontextmanager
    async def _cursor(self) -> AsyncIterator[psycopg.AsyncCursor[dict[str, Any]]]:
        """A dict-row cursor; the procedures' RAISEs come out as TaskErrors."""
        try:
            async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
                yield cur
        except psycopg.Error as exc:
            mapped = task_error_from(exc)
            if mapped is None:
                raise
            raise mapped from exc

    async def _rows(self, sql: str, params: Any) -> list[dict[str, Any]]:
        async with self._cursor() as cur:
            await cur.execute(sql, params)
            return await cur.fetchall()

    async def _one(self, sql: str, params: Any) -> dict[str, Any] | None:
        rows = await self._rows(sql, params)
        return rows[0] if rows else None

    # -- creation ---------------------------------------------------------------------------

    async def create_tasks(self, ticket_id: UUID, phase: str, specs: Sequence[TaskSpec]) -> list[Task]:
        """Create a phase's tasks once: the DAG is checked here first (duplicate keys, unknown
        dependencies, a cycle named as `a -> b -> a`), then by the database, which also refuses ids
        of tasks outside the ticket. Calling it again with the same keys returns the same rows
        unchanged (a resumed ticket run). Tasks without unfinished dependencies are ready at once.
        Raises TaskArgumentError, DependencyError, TaskNotFound (unknown ticket)."""
        validate_batch(specs)
        body = [spec.model_dump(mode="json") for spec in specs]
        rows = await self._rows(CREATE_SQL, (ticket_id, phase, Jsonb(body)))
        return [Task.model_validate(row) for row in rows]

    # -- dispatching ------------------------------------------------------------------------

    async def claim_ready(
        self, dispatcher: str, max_count: int, lease_seconds: float, capabilities: Sequence[str] | None = None
    ) -> list[Task]:
        """Claim up to `max_count` due ready tasks in one query (priority, then age; SKIP LOCKED, so
        concurrent dispatchers never share one). Each is assigned under a lease with a new attempt."""
        caps = list(capabilities) if capabilities is not None else None
        rows = await self._rows(CLAIM_SQL, (dispatcher, max_count, lease_seconds, caps))
        return [Task.model_validate(row) for row in rows]

    async def assign_agent(
        self,
        task_id: UUID,
        attempt: int,
        agent: str,
        *,
        capacity: int | None = None,
        lease_seconds: float | None = None,
    ) -> AssignOutcome | None:
        """Give a claimed task to `agent`. With `capacity`, refused (AT_CAPACITY) when the agent already
        holds that many tasks, checked atomically across dispatchers. None: fenced out."""
        row = await self._one(ASSIGN_SQL, (task_id, attempt, agent, capacity, lease_seconds))
        return AssignOutcome(row["outcome"]) if row and row["outcome"] else None

    async def assign_agents(
        self, assignments: Sequence[tuple[Task, str, int]], *, lease_seconds: float | None = None
    ) -> dict[UUID, AssignOutcome | None]:
        """`assign_agent` for a whole batch of (claimed task, agent, agent capacity) in one round trip."""
        if not assignments:
            return {}
        body = [
            {"id": str(task.id), "attempt": task.attempt, "agent": agent, "capacity": capacity}
            for task, agent, capacity in assignments
        ]
        rows = await self._rows(ASSIGN_MANY_SQL, (Jsonb(body), lease_seconds))
        return {r["id"]: AssignOutcome(r["outcome"]) if r["outcome"] else None for r in rows}

    async def release(
        self, task_id: UUID, attempt: int, retry_in: float = 0.0, reason: str | None = None
    ) -> bool:
        """Hand a claimed task back to ready, due in `retry_in` seconds (no agent free). Not a failure."""
        row = await self._one(RELEASE_SQL, (task_id, attempt, retry_in, reason))
        return bool(row and row["ok"])

    async def agent_load(self, agents: Sequence[str] | None = None) -> dict[str, AgentLoad]:
        """Tasks each agent holds now (assigned + running), by agent; agents holding none are absent."""
        rows = await self._rows(LOAD_SQL, (list(agents) if agents is not None else None,))
        return {row["agent"]: AgentLoad.model_validate(row) for row in rows}

    async def seconds_until_next_due(self, capabilities: Sequence[str] | None = None) -> float | None:
        """Seconds until a ready task comes due or a lease/deadline passes (<= 0: now); None: nothing."""
        caps = list(capabilities) if capabilities is not None else None
        row = await self._one(WAKEUP_SQL, (caps,))
        if row is None or row["at"] is None:
            return None
        return float((row["at"] - row["now"]).total_seconds())

    # -- the attempt's reports ----------------------------------------------------------------

    async def start(
        self, task_id: UUID, attempt: int, agent: str, *, lease_seconds: float | None = None
    ) -> bool:
        """The agent took the task: running, its deadline starts. False: fenced out (stop the work)."""
        row = await self._one(START_SQL, (task_id, attempt, agent, lease_seconds))
        return bool(row and row["ok"])

    async def heartbeat(self, task_id: UUID, attempt: int, lease_seconds: float) -> bool | None:
        """Renew the lease. None: fenced out (stop); True: cancel requested (stop); False: go on."""
        row = await self._one(HEARTBEAT_SQL, (task_id, attempt, lease_seconds))
        return None if row is None else row["cancel_requested"]

    async def complete(self, task_id: UUID, attempt: int, result: Any) -> bool:
        """The attempt succeeded; dependants whose dependencies all succeeded become ready.
        False: fenced out (a late or cancelled attempt), nothing changed."""
        row = await self._one(COMPLETE_SQL, (task_id, attempt, Jsonb(result)))
        return bool(row and row["ok"])

    async def fail(
        self,
        task_id: UUID,
        attempt: int,
        error: str,
        kind: ErrorKind | ErrorClass,
        *,
        retry_after: float | None = None,
    ) -> TaskStatus | None:
        """The attempt failed. `kind` (or a bare class) decides: retryable with attempts left -> READY,
        due after a full-jitter backoff of at least `retry_after` seconds (a rate limit's Retry-After);
        otherwise FAILED and its dependants blocked. None: fenced out, nothing changed."""
        error_class = kind.error_class if isinstance(kind, ErrorKind) else ErrorClass(kind)
        error_kind = kind.value if isinstance(kind, ErrorKind) else None
        if retry_after is not None and retry_after < 0:
            raise TaskArgumentError("retry_after", "retry_after must not be negative")
        row = await self._one(
            FAIL_SQL,
            (
                task_id,
                attempt,
                error,
                error_class.value,
                error_kind,
                retry_after,
                self.backoff.base_seconds,
                self.backoff.cap_seconds,
            ),
        )
        return TaskStatus(row["status"]) if row and row["status"] else None

    async def results(self, ticket_id: UUID, phase: str, keys: Sequence[str]) -> dict[str, Any]:
        """The recorded results of these succeeded tasks of the phase, by key (for bindings)."""
        rows = await self._rows(RESULTS_SQL, (ticket_id, phase, list(keys)))
        return {r["key"]: r["result"] for r in rows}

    async def status_counts(self) -> tuple[dict[str, int], int]:
        """Tasks by status, and how many ready tasks are due (the ready queue's depth)."""
        rows = await self._rows(STATUS_COUNTS_SQL, ())
        return {r["status"]: r["n"] for r in rows}, sum(r["due"] for r in rows)

    async def expire_leases(self) -> list[Task]:
        """Tasks whose lease expired (agent gone) or whose deadline passed (timeout): ready again after
        backoff, or failed/timed_out when out of attempts (dependants blocked). The rows keep the
        expired attempt and agent, so the caller can cancel that work and emit events."""
        rows = await self._rows(EXPIRE_SQL, (self.backoff.base_seconds, self.backoff.cap_seconds))
        return [Task.model_validate(row) for row in rows]

    # -- decisions ----------------------------------------------------------------------------

    async def cancel(self, task_id: UUID, by: str) -> Task:
        """Cancel an unfinished task (dependants blocked; a holding agent sees it at its next
        heartbeat). A finished task is returned unchanged. Raises TaskNotFound."""
        row = await self._one(CANCEL_SQL, (task_id, by))
        assert row is not None  # the procedure raises DK404 rather than return nothing
        return Task.model_validate(row)

    async def cancel_ticket(self, ticket_id: UUID, by: str) -> list[Task]:
        """Cancel every unfinished task of a ticket; returns those it cancelled. Raises TaskNotFound."""
        rows = await self._rows(CANCEL_TICKET_SQL, (ticket_id, by))
        return [Task.model_validate(row) for row in rows]

    async def retry(self, task_id: UUID, by: str) -> Task:
        """Give a failed, timed-out, cancelled or blocked task a fresh budget (ready or pending), and
        unblock what it blocked. Other statuses are returned unchanged. Raises TaskNotFound, and
        DependencyError while one of its dependencies still failed."""
        row = await self._one(RETRY_SQL, (task_id, by))
        assert row is not None
        return Task.model_validate(row)

    # -- reading ------------------------------------------------------------------------------

    async def phase_summary(self, ticket_id: UUID, phase: str | None) -> PhaseSummary:
        """Counts by status of a ticket's phase (every phase with None) and whether all are final /
        all succeeded. Raises TaskNotFound (unknown ticket)."""
        row = await self._one(SUMMARY_SQL, (ticket_id, phase))
        assert row is not None
        return PhaseSummary(ticket_id=ticket_id, phase=phase, **row)

    async def get(self, task_id: UUID) -> Task | None:
        row = await self._one(GET_SQL, (task_id,))
        return Task.model_validate(row) if row else None

    async def list_tasks(
        self, ticket_id: UUID, *, phase: str | None = None, statuses: Sequence[TaskStatus] | None = None
    ) -> list[Task]:
        """A ticket's tasks (of one phase, of some statuses), in creation order."""
        params = {
            "ticket_id": ticket_id,
            "phase": phase,
            "statuses": [s.value for s in statuses] if statuses is not None else None,
        }
        rows = await self._rows(LIST_SQL, params)
        return [Task.model_validate(row) for row in rows]
