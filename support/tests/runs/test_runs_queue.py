"""The run queue on real PostgreSQL: claims, priority, backoff, leases, fencing, NOTIFY wake-up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from agent_orchestrator.runs.models import RunStatus
from agent_orchestrator.runs.runtime import RunsRuntime
from agent_orchestrator.runs.worker import WorkerOptions
from support.tests.runs import toys as runs_toys
from support.tests.runs.helpers import running_workers, wait_for_status

pytestmark = pytest.mark.integration

WORKER_LOGGER = "agent_orchestrator.runs.worker"


@pytest.fixture
async def runtime(database_url: str) -> AsyncIterator[RunsRuntime]:
    runs_toys.ensure_toy_tables(database_url)
    rt = await RunsRuntime.open(database_url, pool_max=8)
    try:
        yield rt
    finally:
        await rt.close()


async def _count(rt: RunsRuntime, sql: str, *params: object) -> int:
    async with rt.pool.connection() as conn:
        row = await (await conn.execute(sql, params)).fetchone()
    return int(row["n"])  # type: ignore[index]


async def _drain(rt: RunsRuntime) -> None:
    """Cancel what earlier tests of this module left queued, so claims see only this test's runs."""
    async with rt.pool.connection() as conn:
        await conn.execute("UPDATE runs SET status = 'cancelled' WHERE status IN ('queued', 'running')")


async def test_concurrent_claims_never_hand_out_a_run_twice(runtime: RunsRuntime) -> None:
    await _drain(runtime)
    runs = [await runtime.queue.enqueue("toy_deploy", {"label": f"r{i}"}) for i in range(12)]
    claims = await asyncio.gather(*(runtime.queue.claim(f"c{i}", 30) for i in range(16)))
    claimed = [c.id for c in claims if c is not None]
    assert sorted(claimed) == sorted(r.id for r in runs)  # each exactly once, 4 claimers got nothing
    assert all(c.attempts == 1 and c.status == RunStatus.RUNNING for c in claims if c is not None)


async def test_several_workers_execute_each_run_once(runtime: RunsRuntime) -> None:
    await _drain(runtime)
    runs = [await runtime.queue.enqueue("toy_deploy", {"label": f"w{i}"}) for i in range(9)]
    async with running_workers(runtime, count=3):
        done = [await wait_for_status(runtime, r.id, [RunStatus.SUCCEEDED]) for r in runs]
    for run in done:
        assert run.result["steps"] == ["prepare", "deploy", "verify"]
        assert run.result["final_result"] == {"verified": {"release": f"{run.input['label']}-1"}}
        calls = await _count(runtime, "SELECT count(*) AS n FROM toy_calls WHERE run_id = %s", run.id)
        effects = await _count(runtime, "SELECT count(*) AS n FROM toy_effects WHERE run_id = %s", run.id)
        claimed = await _count(
            runtime, "SELECT count(*) AS n FROM run_events WHERE run_id = %s AND kind = 'claimed'", run.id
        )
        assert (calls, effects, claimed) == (3, 1, 1)
    owners = {r.lease_owner for r in done}
    assert owners == {None}  # leases released on finish


async def test_priority_then_age_and_not_before(runtime: RunsRuntime) -> None:
    await _drain(runtime)
    q = runtime.queue
    low = await q.enqueue("toy_deploy", {"label": "low"}, priority=0)
    high = await q.enqueue("toy_deploy", {"label": "high"}, priority=5)
    later = await q.enqueue(
        "toy_deploy", {"label": "later"}, priority=9, not_before=datetime.now(UTC) + timedelta(hours=1)
    )
    low2 = await q.enqueue("toy_deploy", {"label": "low2"}, priority=0)
    order = [await q.claim("p", 30) for _ in range(4)]
    assert [r.id if r else None for r in order] == [high.id, low.id, low2.id, None]
    due = await q.seconds_until_next_due()
    assert due is not None and due > 0  # the not-before run, and the leases just taken
    assert (await q.get(later.id)).status == RunStatus.QUEUED  # type: ignore[union-attr]


async def test_idle_worker_is_woken_by_notify(runtime: RunsRuntime) -> None:
    await _drain(runtime)
    assert await runtime.queue.seconds_until_next_due() is None  # nothing due: the worker has no timer
    worker = runtime.worker(WorkerOptions(concurrency=2, lease_seconds=5), worker_id="sleeper")
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        # The worker looked, found nothing and waits with no timer and no run in flight:
        # from here on only the NOTIFY sent by enqueue can wake it.
        await asyncio.wait_for(worker.idle_without_timer.wait(), 30)
        run = await runtime.queue.enqueue("toy_deploy", {"label": "wake"})
        done = await wait_for_status(runtime, run.id, [RunStatus.SUCCEEDED])
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert done.attempts == 1
    claimed = [e for e in await runtime.queue.events_after(run.id, 0) if e.kind == "claimed"]
    assert len(claimed) == 1


async def test_transient_failure_is_retried_after_backoff(runtime: RunsRuntime) -> None:
    run = await runtime.queue.enqueue("toy_flaky", {"label": "flaky", "fail_times": 1})
    async with running_workers(runtime, count=1, retry_base_seconds=0.2):
        done = await wait_for_status(runtime, run.id, [RunStatus.SUCCEEDED, RunStatus.FAILED])
    assert done.status == RunStatus.SUCCEEDED
    assert (done.attempts, done.failures) == (2, 1)
    kinds = [e.kind for e in await runtime.queue.events_after(run.id, 0)]
    assert "retry_scheduled" in kinds


async def test_transient_failures_stop_at_max_attempts(runtime: RunsRuntime) -> None:
    run = await runtime.queue.enqueue("toy_flaky", {"label": "flaky", "fail_times": 9}, max_attempts=2)
    async with running_workers(runtime, count=1, retry_base_seconds=0.05):
        done = await wait_for_status(runtime, run.id, [RunStatus.FAILED])
    assert done.failures == 2 and "unavailable" in (done.error or "")


def _worker_records(caplog: pytest.LogCaptureFixture, run_id: object) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == WORKER_LOGGER and getattr(r, "run_id", None) == str(run_id)
    ]


async def test_a_broken_node_fails_the_run_without_retry(
    runtime: RunsRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    run = await runtime.queue.enqueue("toy_broken", {"label": "broken"})
    with caplog.at_level(logging.WARNING, logger=WORKER_LOGGER):
        async with running_workers(runtime, count=1):
            done = await wait_for_status(runtime, run.id, [RunStatus.FAILED])
    assert done.error == "ValueError: the toy node is broken"
    assert await _count(runtime, "SELECT count(*) AS n FROM toy_calls WHERE run_id = %s", run.id) == 1
    (record,) = _worker_records(caplog, run.id)
    assert record.exc_info is not None  # a bug: the traceback is what the reader needs


async def test_a_workflow_verdict_fails_the_run_with_a_one_line_warning(
    runtime: RunsRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    run = await runtime.queue.enqueue("toy_verdict", {"label": "verdict"})
    with caplog.at_level(logging.WARNING, logger=WORKER_LOGGER):
        async with running_workers(runtime, count=1):
            done = await wait_for_status(runtime, run.id, [RunStatus.FAILED])
    assert done.error == "WorkflowFailed: verdict: the change was not deployed"
    assert (done.attempts, done.failures) == (1, 1)  # failed at once, no retry
    (record,) = _worker_records(caplog, run.id)
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert record.getMessage() == "run failed: verdict: the change was not deployed"


async def test_expired_lease_is_reclaimed_and_the_stale_owner_is_fenced(runtime: RunsRuntime) -> None:
    await _drain(runtime)
    q = runtime.queue
    await q.enqueue("toy_deploy", {"label": "ghosted"})
    ghost = await q.claim("ghost", 0.3)  # a worker that claims and then goes silent
    assert ghost is not None
    async with running_workers(runtime, count=1):
        done = await wait_for_status(runtime, ghost.id, [RunStatus.SUCCEEDED])
    assert (done.attempts, done.failures) == (2, 1)
    # The ghost wakes up and tries to report: every call is refused.
    assert await q.finish(ghost, "ghost", {"late": True}) is False
    assert await q.fail(ghost, "ghost", "late") is None
    assert await q.renew(ghost, "ghost", 30) is None
    assert (await q.get(ghost.id)).result["final_result"] is not None  # type: ignore[union-attr]


async def test_lost_lease_on_the_last_attempt_fails_the_run(runtime: RunsRuntime) -> None:
    await _drain(runtime)
    q = runtime.queue
    run = await q.enqueue("toy_deploy", {"label": "once"}, max_attempts=1)
    assert (await q.claim("ghost", 30)) is not None
    await _expire_lease(runtime, run.id)  # the ghost's worker died: its lease ran out
    assert await q.claim("other", 30) is None
    failed = await q.get(run.id)
    assert failed is not None and failed.status == RunStatus.FAILED and "worker lost" in (failed.error or "")


async def _expire_lease(runtime: RunsRuntime, run_id: object) -> None:
    async with runtime.pool.connection() as conn:
        await conn.execute(
            "UPDATE runs SET lease_expires_at = now() - interval '1 second' WHERE id = %s", (run_id,)
        )
