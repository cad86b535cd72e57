"""Helpers of the task-store tests: specs, plain SQL on the test database (ticket rows, reading
columns, moving timestamps with the database's clock instead of sleeping), and driving an attempt."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from agent_orchestrator.tasks import Task, TaskSpec, TaskStore


def spec(key: str, capability: str, *depends_on: str, **fields: Any) -> TaskSpec:
    return TaskSpec(key=key, capability=capability, request_type="do", depends_on=list(depends_on), **fields)


async def sql(pool: AsyncConnectionPool, query: str, *params: object) -> list[dict[str, Any]]:
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchall() if cur.description else []


async def insert_ticket(pool: AsyncConnectionPool, phase: str = "implement") -> UUID:
    """A ticket row with only the NOT NULL columns (the tickets core is built elsewhere)."""
    rows = await sql(
        pool,
        "INSERT INTO tickets (title, repo_path, created_by, phase)"
        " VALUES ('a ticket', '/srv/repo', 'tests', %s) RETURNING id",
        phase,
    )
    return rows[0]["id"]


async def statuses(store: TaskStore, ticket_id: UUID) -> dict[str, str]:
    return {t.key: t.status.value for t in await store.list_tasks(ticket_id)}


async def make_due(pool: AsyncConnectionPool, task_id: UUID) -> None:
    """A backoff has passed, on the database's clock: no sleeping."""
    await sql(pool, "UPDATE tasks SET not_before = now() WHERE id = %s", task_id)


async def expire_lease(pool: AsyncConnectionPool, task_id: UUID) -> None:
    """The holder stopped heartbeating long enough: its lease lies in the past."""
    await sql(pool, "UPDATE tasks SET lease_expires_at = now() - interval '1 second' WHERE id = %s", task_id)


async def pass_deadline(pool: AsyncConnectionPool, task_id: UUID) -> None:
    await sql(pool, "UPDATE tasks SET deadline_at = now() - interval '1 second' WHERE id = %s", task_id)


async def run_on(store: TaskStore, task: Task, agent: str, lease_seconds: float = 60) -> None:
    """Give a claimed task to an agent and start it, as the dispatcher does when the agent accepts."""
    assert await store.assign_agent(task.id, task.attempt, agent) is not None
    assert await store.start(task.id, task.attempt, agent, lease_seconds=lease_seconds)


async def claim_one(store: TaskStore, capability: str, dispatcher: str = "dispatcher-1") -> Task:
    claimed = await store.claim_ready(dispatcher, 1, 60, [capability])
    assert len(claimed) == 1, claimed
    return claimed[0]
