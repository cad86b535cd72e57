"""The lease an agent holds on a dispatched task while it works on it.

The dispatcher sends a task's request with ``metadata = {"task_id", "task_attempt",
"task_lease_seconds"}``. While the handler runs, the agent's service marks the task running
(`start_task`) and renews the lease every third of its length (`heartbeat_task`); when the handler
answers, the agent records the outcome itself (`complete_task`, or `fail_task_attempt` with the
answer's error class and Retry-After), so a dispatcher that crashed meanwhile loses nothing. All are
stored procedures of ``config/state/080_tasks.sql`` fenced by the attempt: an answer from an attempt
that no longer holds the task changes nothing. When a renewal says this attempt
no longer holds the task (it timed out, was reassigned after a partition) or that a cancel was
requested, the handler is cancelled: its cancel token is set, so a command it runs has its process
group killed (`shared.process.run_command`), and its asyncio task is cancelled. A killed agent simply
stops renewing: the lease expires and the dispatcher gives the task to another agent.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from prometheus_client import Counter
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from shared.bus import (
    AgentRequestEvent,
    AgentResponseEvent,
    BusUnavailable,
    ErrorClass,
    EventBus,
    InterAgentEvent,
    InterAgentEventType,
    ResponseStatus,
)
from shared.cancellation import CancelToken

log = logging.getLogger(__name__)

# Outcomes as the agents record them: `ready` is a failure that will be retried, so retries by
# error class are this counter's outcome="ready" series.
TASK_OUTCOMES = Counter(
    "devtools_agent_task_outcomes_total",
    "Dispatched task attempts by the outcome the agent recorded",
    ["agent", "outcome", "error_class"],
)

START_SQL = "SELECT start_task(%s, %s, %s, %s) AS holds"
HEARTBEAT_SQL = "SELECT heartbeat_task(%s, %s, %s) AS cancel"
COMPLETE_SQL = "SELECT complete_task(%s, %s, %s) AS ok"
FAIL_SQL = "SELECT fail_task_attempt(%s, %s, %s, %s, %s, %s) AS status"
KIND_PATTERN = re.compile(r"^[a-z][a-z_]{0,39}$")
DEFAULT_LEASE_SECONDS = 15.0


@dataclass(frozen=True)
class TaskRef:
    task_id: str
    attempt: int
    lease_seconds: float

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> TaskRef | None:
        """The task a request works on, or None for a plain request (or malformed task fields)."""
        task_id, attempt = metadata.get("task_id"), metadata.get("task_attempt")
        if not isinstance(task_id, str) or not isinstance(attempt, int) or isinstance(attempt, bool):
            return None
        lease = metadata.get("task_lease_seconds", DEFAULT_LEASE_SECONDS)
        if not isinstance(lease, int | float) or not 1 <= lease <= 3600:
            lease = DEFAULT_LEASE_SECONDS
        return cls(task_id, attempt, float(lease))


class TaskLease:
    """Start a task's attempt, keep its lease, and cancel the work when the attempt loses it."""

    def __init__(self, pool: AsyncConnectionPool, task: TaskRef, agent_id: str) -> None:
        self.pool = pool
        self.task = task
        self.agent_id = agent_id
        self.lost_reason: str | None = None

    async def start(self) -> bool:
        """Mark the task running under this attempt; False when the attempt no longer holds it."""
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute(
                    START_SQL, (self.task.task_id, self.task.attempt, self.agent_id, self.task.lease_seconds)
                )
            ).fetchone()
        return bool(row and row["holds"])

    async def record(self, response: AgentResponseEvent) -> str:
        """Record the handler's answer for this attempt: 'succeeded', 'ready' (retried later),
        'failed', or 'fenced' when the attempt no longer holds the task."""
        outcome, error_class = await self._record(response)
        TASK_OUTCOMES.labels(self.agent_id, outcome, error_class or "").inc()
        return outcome

    async def _record(self, response: AgentResponseEvent) -> tuple[str, str | None]:
        async with self.pool.connection() as conn:
            if response.status is ResponseStatus.SUCCESS:
                row = await (
                    await conn.execute(
                        COMPLETE_SQL, (self.task.task_id, self.task.attempt, Jsonb(response.result or {}))
                    )
                ).fetchone()
                return ("succeeded" if row and row["ok"] else "fenced"), None
            error_class = response.error_class or ErrorClass.RETRYABLE  # unclassified: within the budget
            kind = (
                response.error_code
                if response.error_code and KIND_PATTERN.match(response.error_code)
                else None
            )
            params = (
                self.task.task_id,
                self.task.attempt,
                response.error or response.status.value,
                error_class.value,
                kind,
                response.retry_after_seconds,
            )
            row = await (await conn.execute(FAIL_SQL, params)).fetchone()
            return (str(row["status"]) if row and row["status"] else "fenced"), error_class.value

    async def keep(self, work: asyncio.Task[Any], token: CancelToken) -> None:
        """Renew until `work` ends; cancel it when the attempt is fenced out or cancelled."""
        interval = self.task.lease_seconds / 3
        while not work.done():
            await asyncio.wait({work}, timeout=interval)
            if work.done():
                return
            try:
                async with self.pool.connection() as conn:
                    row = await (
                        await conn.execute(
                            HEARTBEAT_SQL, (self.task.task_id, self.task.attempt, self.task.lease_seconds)
                        )
                    ).fetchone()
            except psycopg.OperationalError as exc:
                # The database is unreachable right now: keep working; if it stays away the lease
                # expires and the dispatcher reassigns, and this attempt's answer is fenced out.
                log.warning("task heartbeat failed", extra={"task_id": self.task.task_id, "error": str(exc)})
                continue
            cancel = None if row is None else row["cancel"]
            if cancel is None or cancel:
                self.lost_reason = "task cancelled" if cancel else "task no longer held by this attempt"
                log.info(
                    "cancelling task work",
                    extra={
                        "task_id": self.task.task_id,
                        "attempt": self.task.attempt,
                        "why": self.lost_reason,
                    },
                )
                token.cancel(self.lost_reason)
                work.cancel()
                return


async def run_leased(
    lease: TaskLease, token: CancelToken, work: Callable[[], Awaitable[Any]]
) -> tuple[Any, str | None]:
    """Run `work` under the lease: (its outcome, None) or (None, why it was cancelled)."""
    task = asyncio.ensure_future(work())
    keeper = asyncio.create_task(lease.keep(task, token), name=f"task-lease-{lease.task.task_id}")
    try:
        return await task, None
    except asyncio.CancelledError:
        if lease.lost_reason is None:
            raise  # the caller itself was cancelled (shutdown): not ours to swallow
        return None, lease.lost_reason
    finally:
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)


def task_error(
    request: AgentRequestEvent, agent_id: str, error: str, code: str, error_class: ErrorClass
) -> AgentResponseEvent:
    """The answer to a dispatched request whose task this attempt cannot or may no longer work on."""
    return AgentResponseEvent.for_request(
        request, agent_id, ResponseStatus.ERROR, error=error, error_code=code, error_class=error_class
    )


async def announce_outcome(
    bus: EventBus | None,
    source: str,
    request: AgentRequestEvent,
    task: TaskRef,
    recorded: str,
    response: AgentResponseEvent,
) -> None:
    """Publish the recorded outcome on the bus (task_completed / task_failed). The state is in SQL,
    so a broadcast that cannot be sent costs its observers only."""
    if recorded == "fenced" or bus is None:
        return
    event_type = (
        InterAgentEventType.TASK_COMPLETED if recorded == "succeeded" else InterAgentEventType.TASK_FAILED
    )
    payload = {
        "task_id": task.task_id,
        "attempt": task.attempt,
        "status": recorded,
        "agent": source,
        "error_code": response.error_code,
        "error_class": response.error_class,
    }
    try:
        await bus.emit(
            InterAgentEvent(
                event_type=event_type,
                source_agent=source,
                payload={k: v for k, v in payload.items() if v is not None},
                correlation_id=request.correlation_id,
            )
        )
    except BusUnavailable as exc:
        log.warning("task outcome not announced", extra={"task_id": task.task_id, "error": str(exc)})
