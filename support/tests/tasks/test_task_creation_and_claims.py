"""The task store on real PostgreSQL: creation (DAG, idempotence), promotion along the DAG, claims
(priority, batches, concurrency, agent capacity), NOTIFY wake-ups, error mapping."""

from __future__ import annotations

import asyncio
import uuid
from uuid import UUID

import psycopg
import pytest
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from agent_orchestrator.tasks import (
    TASK_UPDATES_CHANNEL,
    TASKS_CHANNEL,
    AssignOutcome,
    DependencyError,
    TaskArgumentError,
    TaskNotFound,
    TaskStatus,
    TaskStore,
    task_error_from,
)
from support.tests.tasks.helpers import claim_one, insert_ticket, run_on, spec, sql, statuses

pytestmark = pytest.mark.integration

NOTIFY_WAIT = 30.0  # failure detection only: notifications arrive with the commit


def diamond(capability: str) -> list:
    return [
        spec("a", capability),
        spec("b", capability, "a"),
        spec("c", capability, "a"),
        spec("d", capability, "b", "c", locks=["repo:greeter", "env:staging"]),
    ]


async def test_diamond_becomes_ready_along_its_dependencies(
    store: TaskStore, ticket_id: UUID, capability: str
) -> None:
    created = await store.create_tasks(ticket_id, "implement", diamond(capability))
    ids = {t.key: t.id for t in created}
    assert [t.key for t in created] == ["a", "b", "c", "d"]
    assert created[3].depends_on == [ids["b"], ids["c"]]
    assert (created[3].locks, created[0].locks) == (["repo:greeter", "env:staging"], [])
    assert await statuses(store, ticket_id) == {"a": "ready", "b": "pending", "c": "pending", "d": "pending"}

    a = await claim_one(store, capability)
    assert a.key == "a" and await store.claim_ready("dispatcher-2", 10, 60, [capability]) == []
    await run_on(store, a, "agent-1")
    assert await store.complete(a.id, a.attempt, {"ok": "a"})
    assert await statuses(store, ticket_id) == {"a": "succeeded", "b": "ready", "c": "ready", "d": "pending"}

    b, c = await store.claim_ready("dispatcher-1", 10, 60, [capability])  # both in one claim
    assert (b.key, c.key) == ("b", "c")
    await run_on(store, b, "agent-1")
    await run_on(store, c, "agent-2")
    assert await store.complete(b.id, b.attempt, {})
    assert (await store.get(ids["d"])).status is TaskStatus.PENDING  # type: ignore[union-attr]
    summary = await store.phase_summary(ticket_id, "implement")
    assert not summary.all_final and summary.counts == {
        TaskStatus.SUCCEEDED: 2,
        TaskStatus.RUNNING: 1,
        TaskStatus.PENDING: 1,
    }
    assert await store.complete(c.id, c.attempt, {})
    d = await claim_one(store, capability)
    assert d.key == "d"
    await run_on(store, d, "agent-2")
    assert await store.complete(d.id, d.attempt, {"merged": True})
    summary = await store.phase_summary(ticket_id, "implement")
    assert (summary.total, summary.all_final, summary.all_succeeded) == (4, True, True)


async def test_dependencies_completing_at_once_promote_their_dependant(
    store: TaskStore, ticket_id: UUID, capability: str
) -> None:
    # The race the per-ticket lock exists for: b and c finish in concurrent transactions.
    specs = [spec("b", capability), spec("c", capability), spec("d", capability, "b", "c")]
    await store.create_tasks(ticket_id, "implement", specs)
    b, c = await store.claim_ready("dispatcher-1", 10, 60, [capability])
    await run_on(store, b, "agent-1")
    await run_on(store, c, "agent-2")
    assert await asyncio.gather(store.complete(b.id, b.attempt, {}), store.complete(c.id, c.attempt, {})) == [
        True,
        True,
    ]
    assert (await statuses(store, ticket_id))["d"] == "ready"


async def test_cycle_is_refused_naming_it(store: TaskStore, ticket_id: UUID, capability: str) -> None:
    specs = [spec("plan", capability), spec("a", capability, "plan", "c"), spec("b", capability, "a")]
    specs.append(spec("c", capability, "b"))
    with pytest.raises(DependencyError) as caught:
        await store.create_tasks(ticket_id, "implement", specs)
    assert caught.value.cycle == ["a", "c", "b", "a"]
    assert "a -> c -> b -> a" in str(caught.value)
    assert await store.list_tasks(ticket_id) == []


async def test_database_refuses_a_cycle_on_its_own(pool: AsyncConnectionPool, ticket_id: UUID) -> None:
    # Bypass the Python check: the database still never stores a cycle.
    body = [
        {"key": "x", "capability": "c", "request_type": "r", "depends_on": ["y"]},
        {"key": "y", "capability": "c", "request_type": "r", "depends_on": ["x"]},
        {"key": "z", "capability": "c", "request_type": "r"},
    ]
    with pytest.raises(psycopg.Error) as caught:
        await sql(pool, "SELECT * FROM create_tasks(%s, 'implement', %s)", ticket_id, Jsonb(body))
    mapped = task_error_from(caught.value)
    assert isinstance(mapped, DependencyError)
    assert (mapped.problem, mapped.detail) == ("dependency_cycle", "x, y")
    assert await sql(pool, "SELECT id FROM tasks WHERE ticket_id = %s", ticket_id) == []


async def test_unknown_dependency_is_refused(
    store: TaskStore, pool: AsyncConnectionPool, ticket_id: UUID, capability: str
) -> None:
    with pytest.raises(DependencyError) as caught:
        await store.create_tasks(ticket_id, "implement", [spec("a", capability, "missing")])
    assert caught.value.unknown == "missing"

    stranger = str(uuid.uuid4())
    with pytest.raises(DependencyError) as caught:
        await store.create_tasks(ticket_id, "implement", [spec("a", capability, stranger)])
    assert (caught.value.unknown, caught.value.problem) == (stranger, "unknown_dependency")

    # A task of another ticket is as unknown as no task at all: a DAG stays within its ticket.
    other_ticket = await insert_ticket(pool)
    [foreign] = await store.create_tasks(other_ticket, "implement", [spec("f", capability)])
    with pytest.raises(DependencyError) as caught:
        await store.create_tasks(ticket_id, "implement", [spec("a", capability, str(foreign.id))])
    assert caught.value.unknown == str(foreign.id)
    assert await store.list_tasks(ticket_id) == []


async def test_creation_is_idempotent(store: TaskStore, ticket_id: UUID, capability: str) -> None:
    first = await store.create_tasks(ticket_id, "implement", diamond(capability))
    again = await store.create_tasks(ticket_id, "implement", diamond(capability))
    assert [t.id for t in again] == [t.id for t in first]
    assert again == first  # returned unchanged
    # Two ticket runs resuming at once (a crash and a takeover) still create each task once.
    other = await store.create_tasks(ticket_id, "review", [spec("r1", capability, str(first[0].id))])
    concurrent = await asyncio.gather(
        *(store.create_tasks(ticket_id, "deploy", diamond(capability)) for _ in range(3))
    )
    assert len({tuple(t.id for t in batch) for batch in concurrent}) == 1
    assert len(await store.list_tasks(ticket_id)) == 4 + 1 + 4
    assert other[0].depends_on == [first[0].id] and other[0].status is TaskStatus.PENDING


async def test_claims_follow_priority_then_creation_order(
    store: TaskStore, ticket_id: UUID, capability: str
) -> None:
    specs = [
        spec("low", capability),
        spec("high", capability, priority=5),
        spec("lowest", capability, priority=-3),
        spec("high2", capability, priority=5),
        spec("urgent", capability, priority=1000),
    ]
    await store.create_tasks(ticket_id, "implement", specs)
    first = await store.claim_ready("dispatcher-1", 3, 60, [capability])
    rest = await store.claim_ready("dispatcher-1", 10, 60, [capability])
    assert [t.key for t in first] == ["urgent", "high", "high2"]
    assert [t.key for t in rest] == ["low", "lowest"]
    assert all(t.status is TaskStatus.ASSIGNED and t.attempt == 1 for t in first + rest)
    assert all(t.claimed_by == "dispatcher-1" and t.lease_expires_at is not None for t in first + rest)


async def test_concurrent_claimers_never_share_a_task(
    store: TaskStore, ticket_id: UUID, capability: str
) -> None:
    created = await store.create_tasks(ticket_id, "implement", [spec(f"t{i}", capability) for i in range(20)])
    claims = await asyncio.gather(
        *(store.claim_ready(f"dispatcher-{i}", 8, 60, [capability]) for i in range(4))
    )
    claimed = [t.id for batch in claims for t in batch]
    assert len(claimed) == len(set(claimed)) == 20  # each exactly once
    assert set(claimed) == {t.id for t in created}


async def test_an_agent_never_gets_more_than_its_capacity(
    store: TaskStore, ticket_id: UUID, capability: str
) -> None:
    await store.create_tasks(ticket_id, "implement", [spec(f"t{i}", capability) for i in range(4)])
    tasks = await store.claim_ready("dispatcher-1", 4, 60, [capability])
    agent = f"agent-{capability}"
    # Four dispatchers offering one task each to the same agent of capacity 2, all at once.
    outcomes = await asyncio.gather(*(store.assign_agent(t.id, t.attempt, agent, capacity=2) for t in tasks))
    assert sorted(outcomes) == [AssignOutcome.ASSIGNED] * 2 + [AssignOutcome.AT_CAPACITY] * 2
    load = await store.agent_load([agent])
    assert (load[agent].assigned, load[agent].running, load[agent].total) == (2, 0, 2)
    given = [t for t, o in zip(tasks, outcomes, strict=True) if o is AssignOutcome.ASSIGNED]
    assert await store.start(given[0].id, given[0].attempt, agent)
    assert (await store.agent_load([agent]))[agent].running == 1
    # Repeating an assignment is harmless; another agent cannot take an assigned task over.
    assert await store.assign_agent(given[0].id, given[0].attempt, agent) is None  # running now
    assert await store.assign_agent(given[1].id, given[1].attempt, agent) is AssignOutcome.ASSIGNED
    assert await store.assign_agent(given[1].id, given[1].attempt, "someone-else") is None


async def test_dispatchers_are_woken_by_notify(
    store: TaskStore, database_url: str, ticket_id: UUID, capability: str
) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as listener:
        await listener.execute(f"LISTEN {TASKS_CHANNEL}")
        await listener.execute(f"LISTEN {TASK_UPDATES_CHANNEL}")
        created = await store.create_tasks(
            ticket_id, "implement", [spec("a", capability), spec("b", capability, "a")]
        )
        got = [(n.channel, n.payload) async for n in listener.notifies(timeout=NOTIFY_WAIT, stop_after=1)]
        assert got == [(TASKS_CHANNEL, capability)]  # a is ready at creation

        a = await claim_one(store, capability)
        await run_on(store, a, "agent-1")
        assert await store.complete(a.id, a.attempt, {})
        got = [(n.channel, n.payload) async for n in listener.notifies(timeout=NOTIFY_WAIT, stop_after=2)]
        assert set(got) == {(TASKS_CHANNEL, capability), (TASK_UPDATES_CHANNEL, str(ticket_id))}

        b = await claim_one(store, capability)
        assert b.id == created[1].id
        assert await store.release(b.id, b.attempt, 0, "no agent free")
        got = [(n.channel, n.payload) async for n in listener.notifies(timeout=NOTIFY_WAIT, stop_after=1)]
        assert got == [(TASKS_CHANNEL, capability)]


async def test_errors_are_typed(store: TaskStore, ticket_id: UUID, capability: str) -> None:
    with pytest.raises(TaskNotFound):
        await store.create_tasks(uuid.uuid4(), "implement", [spec("a", capability)])
    with pytest.raises(TaskNotFound):
        await store.cancel(uuid.uuid4(), "tests")
    with pytest.raises(TaskNotFound):
        await store.phase_summary(uuid.uuid4(), None)
    with pytest.raises(TaskArgumentError) as caught:
        await store.claim_ready("dispatcher-1", 0, 60, [capability])
    assert caught.value.field == "max_count"
    with pytest.raises(TaskArgumentError) as caught:
        await store.create_tasks(ticket_id, " ", [spec("a", capability)])
    assert caught.value.field == "phase"
    # Calls fenced by attempt answer "not applied" for an unknown task: a late answer is normal.
    ghost = uuid.uuid4()
    assert await store.complete(ghost, 1, {}) is False
    assert await store.heartbeat(ghost, 1, 30) is None
    assert await store.fail(ghost, 1, "boom", "permanent") is None


@pytest.mark.parametrize(
    ("field", "value"),
    [("priority", 1.5), ("max_attempts", 21), ("timeout_seconds", 0), ("capability", " "), ("locks", [7])],
)
async def test_database_checks_spec_fields_on_its_own(
    pool: AsyncConnectionPool, ticket_id: UUID, field: str, value: object
) -> None:
    body = [{"key": "x", "capability": "c", "request_type": "r", field: value}]
    with pytest.raises(psycopg.Error) as caught:
        await sql(pool, "SELECT * FROM create_tasks(%s, 'implement', %s)", ticket_id, Jsonb(body))
    mapped = task_error_from(caught.value)
    assert isinstance(mapped, TaskArgumentError) and mapped.field == field
