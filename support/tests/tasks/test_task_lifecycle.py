"""A task's attempts on real PostgreSQL: retryable and permanent failures, backoff through not_before
(on the database's clock), releases, lease expiry and reassignment with fencing, timeouts,
cancellation, and retry by a person."""

from __future__ import annotations

from uuid import UUID

import pytest
from psycopg_pool import AsyncConnectionPool

from agent_orchestrator.tasks import (
    AssignOutcome,
    Backoff,
    DependencyError,
    ErrorClass,
    ErrorKind,
    TaskStatus,
    TaskStore,
)
from support.tests.tasks.helpers import (
    claim_one,
    expire_lease,
    make_due,
    pass_deadline,
    run_on,
    spec,
    sql,
    statuses,
)

pytestmark = pytest.mark.integration


async def test_retryable_failure_is_claimable_only_from_not_before(
    store: TaskStore, pool: AsyncConnectionPool, ticket_id: UUID, capability: str
) -> None:
    [created] = await store.create_tasks(ticket_id, "implement", [spec("a", capability)])
    task = await claim_one(store, capability)
    await run_on(store, task, "agent-1")
    # A rate limit: the retry waits for its Retry-After (longer than any jitter of the default policy).
    status = await store.fail(
        task.id, task.attempt, "429 from the forge", ErrorKind.RATE_LIMITED, retry_after=3600
    )
    assert status is TaskStatus.READY
    [row] = await sql(
        pool,
        "SELECT not_before = updated_at + interval '3600 seconds' AS exact, not_before > now() AS future,"
        " failures, error_class, error_kind, assigned_agent FROM tasks WHERE id = %s",
        created.id,
    )
    assert row == {
        "exact": True,
        "future": True,
        "failures": 1,
        "error_class": "retryable",
        "error_kind": "rate_limited",
        "assigned_agent": "agent-1",
    }
    assert await store.claim_ready("dispatcher-1", 10, 60, [capability]) == []
    due = await store.seconds_until_next_due([capability])
    assert due is not None and due > 0
    await make_due(pool, created.id)
    again = await claim_one(store, capability)
    assert (again.id, again.attempt, again.failures) == (created.id, 2, 1)


@pytest.mark.parametrize("failure", [1, 2, 3, 5, 8, 12, 40, 5000])
async def test_full_jitter_spreads_within_the_bounds(pool: AsyncConnectionPool, failure: int) -> None:
    ceiling = min(60, 0.5 * 2 ** min(failure - 1, 62))
    rows = await sql(
        pool, "SELECT tasks_retry_delay(%s, NULL, 0.5, 60) AS d FROM generate_series(1, 2000)", failure
    )
    delays = [row["d"] for row in rows]
    assert all(0 <= d <= ceiling for d in delays)
    # Full jitter covers the whole range rather than clustering near the ceiling.
    assert min(delays) < ceiling / 10 and max(delays) > ceiling * 9 / 10


async def test_retry_after_is_a_floor(pool: AsyncConnectionPool) -> None:
    [row] = await sql(pool, "SELECT min(tasks_retry_delay(1, 30, 1, 10)) AS lo FROM generate_series(1, 100)")
    assert row["lo"] == 30
    rows = await sql(pool, "SELECT tasks_retry_delay(4, 2, 1, 10) AS d FROM generate_series(1, 500)")
    assert all(2 <= r["d"] <= 8 for r in rows)


async def test_backoff_delay_lies_within_the_jitter_bounds(
    pool: AsyncConnectionPool, ticket_id: UUID, capability: str
) -> None:
    store = TaskStore(pool, backoff=Backoff(base_seconds=1000, cap_seconds=1500))
    [created] = await store.create_tasks(ticket_id, "implement", [spec("a", capability, max_attempts=5)])
    bounds = []
    for attempt in (1, 2):
        task = await claim_one(store, capability)
        await run_on(store, task, "agent-1")
        assert (
            await store.fail(task.id, task.attempt, "db down", ErrorKind.INFRASTRUCTURE) is TaskStatus.READY
        )
        [row] = await sql(
            pool,
            "SELECT extract(epoch FROM not_before - updated_at)::float AS delay FROM tasks WHERE id = %s",
            created.id,
        )
        bounds.append((row["delay"], min(1500, 1000 * 2 ** (attempt - 1))))
        await make_due(pool, created.id)
    assert all(0 <= delay <= ceiling for delay, ceiling in bounds), bounds


async def test_retries_stop_when_attempts_run_out(store: TaskStore, ticket_id: UUID, capability: str) -> None:
    await store.create_tasks(ticket_id, "implement", [spec("a", capability, max_attempts=1)])
    task = await claim_one(store, capability)
    await run_on(store, task, "agent-1")
    assert (
        await store.fail(task.id, task.attempt, "connection reset", ErrorClass.RETRYABLE) is TaskStatus.FAILED
    )
    done = await store.get(task.id)
    assert done is not None and (done.failures, done.finished_at is not None) == (1, True)


async def test_permanent_failure_blocks_dependants_with_the_reason(
    store: TaskStore, ticket_id: UUID, capability: str
) -> None:
    specs = [spec("build", capability), spec("test", capability, "build"), spec("deploy", capability, "test")]
    specs.append(spec("docs", capability))
    created = {t.key: t for t in await store.create_tasks(ticket_id, "implement", specs)}
    build = (await store.claim_ready("dispatcher-1", 1, 60, [capability]))[0]
    assert build.key == "build"
    await run_on(store, build, "agent-1")
    status = await store.fail(build.id, build.attempt, "SyntaxError in app.py", ErrorKind.BUILD_ERROR)
    assert status is TaskStatus.FAILED  # attempts were left: the class decides
    assert await statuses(store, ticket_id) == {
        "build": "failed",
        "test": "blocked",
        "deploy": "blocked",
        "docs": "ready",
    }
    for key in ("test", "deploy"):  # transitive dependants name the task that actually failed
        reason = (await store.get(created[key].id)).blocked_reason  # type: ignore[union-attr]
        assert reason == f"dependency build [{build.id}] failed: SyntaxError in app.py"
    assert [t.key for t in await store.claim_ready("dispatcher-1", 10, 60, [capability])] == ["docs"]
    failed = await store.get(build.id)
    assert failed is not None and (failed.error_class, failed.error_kind) == (
        ErrorClass.PERMANENT,
        "build_error",
    )


async def test_release_is_not_a_failure(
    store: TaskStore, pool: AsyncConnectionPool, ticket_id: UUID, capability: str
) -> None:
    await store.create_tasks(ticket_id, "implement", [spec("a", capability, max_attempts=1)])
    task = await claim_one(store, capability)
    assert await store.release(task.id, task.attempt, 3600, "no agent with capacity")
    assert not await store.release(task.id, task.attempt, 0, "twice")  # no longer assigned
    released = await store.get(task.id)
    assert released is not None
    assert (released.status, released.failures, released.wait_reason) == (
        TaskStatus.READY,
        0,
        "no agent with capacity",
    )
    assert await store.claim_ready("dispatcher-1", 10, 60, [capability]) == []
    await make_due(pool, task.id)
    again = await claim_one(store, capability)
    assert again.attempt == 2 and again.wait_reason is None
    assert await store.assign_agent(task.id, task.attempt, "agent-1") is None  # the released claim is dead
    assert await store.assign_agent(again.id, again.attempt, "agent-1") is AssignOutcome.ASSIGNED


async def test_lease_expiry_reassigns_and_fences_the_late_answer(
    store: TaskStore, pool: AsyncConnectionPool, ticket_id: UUID, capability: str
) -> None:
    await store.create_tasks(ticket_id, "implement", [spec("a", capability), spec("b", capability, "a")])
    first = await claim_one(store, capability)
    await run_on(store, first, "agent-1")
    assert await store.heartbeat(first.id, first.attempt, 60) is False
    await expire_lease(pool, first.id)  # agent-1 was partitioned away

    expired = [t for t in await store.expire_leases() if t.ticket_id == ticket_id]
    assert [(t.id, t.status, t.attempt, t.assigned_agent, t.error_kind) for t in expired] == [
        (first.id, TaskStatus.READY, 1, "agent-1", "agent_gone")
    ]
    assert [t for t in await store.expire_leases() if t.ticket_id == ticket_id] == []  # handled once
    assert await store.heartbeat(first.id, first.attempt, 60) is None  # agent-1 learns it lost the task

    await make_due(pool, first.id)
    second = await claim_one(store, capability, dispatcher="dispatcher-2")
    assert (second.id, second.attempt) == (first.id, 2)
    await run_on(store, second, "agent-2")

    assert await store.complete(first.id, first.attempt, {"from": "agent-1"}) is False
    assert await store.fail(first.id, first.attempt, "late", ErrorKind.INVALID_INPUT) is None
    assert await store.start(first.id, first.attempt, "agent-1") is False
    current = await store.get(first.id)
    assert current is not None
    assert (current.status, current.attempt, current.assigned_agent) == (TaskStatus.RUNNING, 2, "agent-2")

    assert await store.complete(second.id, second.attempt, {"from": "agent-2"})
    done = await store.get(first.id)
    assert done is not None and (done.status, done.result) == (TaskStatus.SUCCEEDED, {"from": "agent-2"})
    assert (await statuses(store, ticket_id))["b"] == "ready"


async def test_lost_on_the_last_attempt_fails_and_blocks(
    store: TaskStore, pool: AsyncConnectionPool, ticket_id: UUID, capability: str
) -> None:
    await store.create_tasks(
        ticket_id, "implement", [spec("a", capability, max_attempts=1), spec("b", capability, "a")]
    )
    task = await claim_one(store, capability)
    assert await store.assign_agent(task.id, task.attempt, "agent-1") is AssignOutcome.ASSIGNED
    await expire_lease(pool, task.id)  # the agent never took it up
    [expired] = [t for t in await store.expire_leases() if t.ticket_id == ticket_id]
    assert (expired.status, expired.error_kind, expired.failures) == (TaskStatus.FAILED, "agent_gone", 1)
    assert await statuses(store, ticket_id) == {"a": "failed", "b": "blocked"}


async def test_timeout_ends_as_timed_out_and_a_late_completion_changes_nothing(
    store: TaskStore, pool: AsyncConnectionPool, ticket_id: UUID, capability: str
) -> None:
    specs = [spec("slow", capability, max_attempts=2, timeout_seconds=5), spec("after", capability, "slow")]
    await store.create_tasks(ticket_id, "implement", specs)
    first = await claim_one(store, capability)
    await run_on(store, first, "agent-1")
    running = await store.get(first.id)
    assert running is not None and running.deadline_at is not None
    [row] = await sql(
        pool,
        "SELECT deadline_at = started_at + interval '5 seconds' AS ok FROM tasks WHERE id = %s",
        first.id,
    )
    assert row["ok"]

    await pass_deadline(pool, first.id)
    [expired] = [t for t in await store.expire_leases() if t.ticket_id == ticket_id]
    assert (expired.status, expired.error_kind, expired.assigned_agent) == (
        TaskStatus.READY,
        "timeout",
        "agent-1",
    )

    await make_due(pool, first.id)
    second = await claim_one(store, capability)
    await run_on(store, second, "agent-2")
    await pass_deadline(pool, second.id)
    [expired] = [t for t in await store.expire_leases() if t.ticket_id == ticket_id]
    assert (expired.status, expired.failures) == (TaskStatus.TIMED_OUT, 2)
    assert await store.complete(second.id, second.attempt, {"late": True}) is False
    assert await statuses(store, ticket_id) == {"slow": "timed_out", "after": "blocked"}


async def test_cancel_then_complete_stays_cancelled(
    store: TaskStore, ticket_id: UUID, capability: str
) -> None:
    await store.create_tasks(ticket_id, "implement", [spec("a", capability), spec("b", capability, "a")])
    task = await claim_one(store, capability)
    await run_on(store, task, "agent-1")
    cancelled = await store.cancel(task.id, "alice")
    assert (cancelled.status, cancelled.cancel_requested, cancelled.assigned_agent) == (
        TaskStatus.CANCELLED,
        True,
        "agent-1",
    )
    assert await store.heartbeat(task.id, task.attempt, 60) is True  # the agent is told to stop
    assert await store.complete(task.id, task.attempt, {"done": True}) is False
    assert await store.fail(task.id, task.attempt, "stopped", ErrorKind.INFRASTRUCTURE) is None
    final = await store.get(task.id)
    assert final is not None and (final.status, final.result, final.error) == (
        TaskStatus.CANCELLED,
        None,
        "cancelled by alice",
    )
    blocked = (await store.list_tasks(ticket_id, statuses=[TaskStatus.BLOCKED]))[0]
    assert (
        blocked.key == "b"
        and blocked.blocked_reason == f"dependency a [{task.id}] cancelled: cancelled by alice"
    )
    assert (await store.cancel(task.id, "bob")).error == "cancelled by alice"  # final: unchanged


async def test_cancelling_the_ticket_cancels_its_unfinished_tasks(
    store: TaskStore, ticket_id: UUID, capability: str
) -> None:
    specs = [
        spec("done", capability, priority=1),
        spec("busy", capability),
        spec("later", capability, "busy"),
    ]
    await store.create_tasks(ticket_id, "implement", specs)
    done, busy = await store.claim_ready("dispatcher-1", 2, 60, [capability])
    await run_on(store, done, "agent-1")
    await run_on(store, busy, "agent-2")
    assert await store.complete(done.id, done.attempt, {})
    cancelled = await store.cancel_ticket(ticket_id, "alice")
    assert {(t.key, t.cancel_requested) for t in cancelled} == {("busy", True), ("later", False)}
    assert await statuses(store, ticket_id) == {
        "done": "succeeded",
        "busy": "cancelled",
        "later": "cancelled",
    }
    summary = await store.phase_summary(ticket_id, "implement")
    assert (summary.all_final, summary.all_succeeded) == (True, False)
    assert await store.complete(busy.id, busy.attempt, {}) is False


async def test_retry_restores_a_failed_task_and_unblocks_its_dependants(
    store: TaskStore, ticket_id: UUID, capability: str
) -> None:
    specs = [spec("a", capability), spec("b", capability, "a"), spec("c", capability, "b")]
    created = {t.key: t for t in await store.create_tasks(ticket_id, "implement", specs)}
    a = await claim_one(store, capability)
    await run_on(store, a, "agent-1")
    assert (
        await store.fail(a.id, a.attempt, "token refused", ErrorKind.PERMISSION_DENIED) is TaskStatus.FAILED
    )
    assert await statuses(store, ticket_id) == {"a": "failed", "b": "blocked", "c": "blocked"}

    with pytest.raises(DependencyError) as caught:
        await store.retry(created["b"].id, "alice")  # its dependency still failed
    assert (caught.value.problem, caught.value.detail) == ("dependency_unfinished", str(a.id))

    retried = await store.retry(a.id, "alice")
    assert (retried.status, retried.failures, retried.finished_at) == (TaskStatus.READY, 0, None)
    assert await statuses(store, ticket_id) == {"a": "ready", "b": "pending", "c": "pending"}
    again = await claim_one(store, capability)
    assert (again.id, again.attempt) == (a.id, 2)
    await run_on(store, again, "agent-1")
    assert await store.complete(again.id, again.attempt, {})
    assert await statuses(store, ticket_id) == {"a": "succeeded", "b": "ready", "c": "pending"}
    unchanged = await store.retry(a.id, "alice")  # succeeded: nothing to retry
    assert unchanged.status is TaskStatus.SUCCEEDED and unchanged.attempt == 2


async def test_retry_keeps_what_another_failure_still_blocks(
    store: TaskStore, ticket_id: UUID, capability: str
) -> None:
    specs = [spec("x", capability), spec("y", capability), spec("z", capability, "x", "y")]
    await store.create_tasks(ticket_id, "implement", specs)
    x, y = await store.claim_ready("dispatcher-1", 2, 60, [capability])
    for task in (x, y):
        await run_on(store, task, "agent-1")
        assert (
            await store.fail(task.id, task.attempt, f"{task.key} bad", ErrorKind.INVALID_INPUT)
            is TaskStatus.FAILED
        )
    await store.retry(x.id, "alice")
    rows = {t.key: t for t in await store.list_tasks(ticket_id)}
    assert rows["z"].status is TaskStatus.BLOCKED
    assert rows["z"].blocked_reason == f"dependency y [{y.id}] failed: y bad"
