"""Workflow state on a real PostgreSQL: compare-and-set, retries, checkpoints, transitions, cleanup."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

import psycopg
import pytest

from shared.lib.workflow_state import (
    InvalidTransition,
    VersionConflict,
    WorkflowArgumentError,
    WorkflowExists,
    WorkflowNotFound,
    WorkflowStateManager,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def states(database_url: str) -> AsyncIterator[WorkflowStateManager]:
    manager = await WorkflowStateManager.connect(database_url, max_size=4, name="test-workflow-state")
    yield manager
    await manager.close()


async def test_create_and_read(states: WorkflowStateManager) -> None:
    created = await states.create("wf-read", "pr_deployment", {"pr": 7}, participating_agents=["cicd"])
    assert created.version == 1 and created.status == "pending" and created.state_data == {"pr": 7}
    assert (await states.get("wf-read")) == created
    with pytest.raises(WorkflowExists):
        await states.create("wf-read", "pr_deployment")
    with pytest.raises(WorkflowNotFound) as exc:
        await states.get("wf-missing")
    assert exc.value.argument == "workflow_id"


async def test_compare_and_set_never_overwrites_on_mismatch(states: WorkflowStateManager) -> None:
    await states.create("wf-cas", "docs", {"n": 0})
    assert await states.set("wf-cas", {"n": 1}, expected_version=1) == 2
    with pytest.raises(VersionConflict) as exc:
        await states.set("wf-cas", {"n": 99}, expected_version=1)
    assert (exc.value.expected, exc.value.current) == (1, 2)
    current = await states.get("wf-cas")
    assert current.state_data == {"n": 1} and current.version == 2


async def test_update_without_retry_raises_version_conflict(
    states: WorkflowStateManager, database_url: str
) -> None:
    await states.create("wf-noretry", "docs", {"n": 0})
    calls = 0

    def bump_while_another_writer_commits(data: dict[str, int]) -> dict[str, int]:
        nonlocal calls
        calls += 1
        # A real concurrent writer on its own connection moves the version between our read and write.
        with psycopg.connect(database_url, autocommit=True) as other:
            other.execute("SELECT * FROM update_workflow_state('wf-noretry', 1, '{\"n\": 10}')")
        return {"n": data["n"] + 1}

    with pytest.raises(VersionConflict) as exc:
        await states.update("wf-noretry", bump_while_another_writer_commits, retry=False)
    assert (exc.value.expected, exc.value.current) == (1, 2) and calls == 1
    assert (await states.get("wf-noretry")).state_data == {"n": 10}


async def test_update_with_retry_reapplies_on_the_newer_data(
    states: WorkflowStateManager, database_url: str
) -> None:
    await states.create("wf-retry", "docs", {"n": 0})
    seen: list[int] = []

    def bump(data: dict[str, int]) -> dict[str, int]:
        seen.append(data["n"])
        if len(seen) == 1:
            with psycopg.connect(database_url, autocommit=True) as other:
                other.execute("SELECT * FROM update_workflow_state('wf-retry', 1, '{\"n\": 10}')")
        return {"n": data["n"] + 1}

    result = await states.update("wf-retry", bump)
    assert seen == [0, 10] and result.state_data == {"n": 11} and result.version == 3


async def test_concurrent_writers_lose_no_increment(database_url: str) -> None:
    writers, increments = 12, 10
    managers = [
        await WorkflowStateManager.connect(database_url, max_size=1, name=f"test-writer-{i}")
        for i in range(3)
    ]
    try:
        await managers[0].create("wf-counter", "self_healing", {"count": 0, "untouched": "yes"})

        async def writer(index: int) -> None:
            for _ in range(increments):
                await managers[index % len(managers)].update(
                    "wf-counter", lambda d: {**d, "count": d["count"] + 1}
                )

        await asyncio.gather(*(writer(i) for i in range(writers)))
        final = await managers[0].get("wf-counter")
    finally:
        for manager in managers:
            await manager.close()
    assert final.state_data == {"count": writers * increments, "untouched": "yes"}
    assert final.version == 1 + writers * increments


async def test_checkpoint_and_restore_as_a_new_version(states: WorkflowStateManager) -> None:
    await states.create("wf-cp", "pr_deployment", {"stage": "built"}, current_step="build")
    cp = await states.checkpoint("wf-cp", "build", agent="cicd", duration_seconds=1.5)
    await states.set("wf-cp", {"stage": "deploy-broken"}, expected_version=1, current_step="deploy")
    version = await states.restore("wf-cp", cp)
    restored = await states.get("wf-cp")
    assert version == 3 and restored.version == 3
    assert restored.state_data == {"stage": "built"} and restored.current_step == "build"
    [saved] = await states.checkpoints("wf-cp")
    assert (saved.agent, saved.duration_seconds, saved.workflow_version) == ("cicd", 1.5, 1)
    with pytest.raises(VersionConflict):
        await states.restore("wf-cp", cp, expected_version=1)
    with pytest.raises(WorkflowNotFound) as exc:
        await states.restore("wf-cp", cp + 1000)
    assert exc.value.argument == "checkpoint_id"


async def test_status_transitions_are_validated(states: WorkflowStateManager) -> None:
    await states.create("wf-status", "docs")
    assert (await states.transition("wf-status", "running")).status == "running"
    done = await states.transition("wf-status", "completed")
    assert done.status == "completed" and done.completed_at is not None
    with pytest.raises(InvalidTransition, match="completed -> running"):
        await states.transition("wf-status", "running")
    with pytest.raises(WorkflowArgumentError) as exc:
        await states.transition("wf-status", "exploded")
    assert exc.value.argument == "new_status"
    await states.create("wf-fail", "docs")
    await states.transition("wf-fail", "running")
    failed = await states.transition("wf-fail", "failed", error_message="tests red")
    assert failed.error_message == "tests red"
    with pytest.raises(VersionConflict):
        await states.transition("wf-fail", "running", expected_version=1)


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda s: s.create("", "docs"), "workflow_id"),
        (lambda s: s.create("wf-x", " "), "workflow_type"),
        (lambda s: s.checkpoint("wf-args", ""), "step"),
        (lambda s: s.checkpoint("wf-args", "s", status="done"), "status"),
        (lambda s: s.cleanup_old(timedelta(days=-1)), "retention"),
    ],
)
async def test_bad_arguments_name_the_argument(states: WorkflowStateManager, call, argument: str) -> None:  # type: ignore[no-untyped-def]
    if argument in ("step", "status"):
        with contextlib.suppress(WorkflowExists):
            await states.create("wf-args", "docs")
    with pytest.raises(WorkflowArgumentError) as exc:
        await call(states)
    assert exc.value.argument == argument and argument in str(exc.value)


async def test_cleanup_honours_its_retention(states: WorkflowStateManager, database_url: str) -> None:
    for name in ("wf-old", "wf-recent", "wf-running"):
        await states.create(name, "cleanup")
        await states.transition(name, "running")
    await states.transition("wf-old", "completed")
    await states.transition("wf-recent", "cancelled")
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "UPDATE workflow_state SET completed_at = now() - interval '10 days' WHERE workflow_id = 'wf-old'"
        )
    assert await states.cleanup_old(timedelta(days=30)) == 0
    assert await states.cleanup_old(timedelta(days=7)) == 1
    with pytest.raises(WorkflowNotFound):
        await states.get("wf-old")
    assert (await states.get("wf-recent")).status == "cancelled"
    assert await states.cleanup_old(timedelta(0)) >= 1
    assert (await states.get("wf-running")).status == "running"
