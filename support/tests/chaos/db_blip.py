"""Runs in flight through a database fault, for the chaos tests of issue 16 item 2.

Four pr_deployment runs, each to an environment of its own, held at two points of the deploy step:
two wait for the environment's lock (the test holds it), so after the fault the infrastructure agent
still has to check their fencing tokens against the lock table; two are mid-deploy (their app held
unhealthy by a gate file), so the orchestrator still has to record the deploy, verify, release the
locks and checkpoint. Then the fault, then the test lets them go: every run must succeed with at most
one extra attempt, each environment with one live release.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from agent_orchestrator.demo.sample_repo import SampleRepo, create_sample_repo
from agent_orchestrator.runs.runtime import RunsRuntime
from shared.locks import ResourceLockManager
from support.tests.agents.processes import free_port
from support.tests.chaos.mid_deploy import (
    assert_one_live_release,
    deploy_in_progress,
    hold_health,
    start_deploy_run,
)
from support.tests.chaos.orchestrator_kill import wait_for_run_event
from support.tests.workflows.flagship_platform import Platform

TEST_LOCK_OWNER = "db-chaos-test"


@dataclass
class HeldRun:
    run_id: UUID
    repo: SampleRepo
    environment: str
    gate: Path


async def waiting_for_lock(manager: ResourceLockManager, resource: str) -> bool:
    async with manager.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM lock_wait_queue WHERE resource_id = %s", (resource,)
        )
        row = await cur.fetchone()
    return bool(row and row["n"])  # type: ignore[index]


@contextlib.asynccontextmanager
async def runs_held_in_deploy(
    platform: Platform, runtime: RunsRuntime, database_url: str, tmp_path: Path
) -> AsyncIterator[list[HeldRun]]:
    """Start the four runs and hold them (yielded once every one is where it should be); on exit
    the locks are let go and the gates opened."""
    manager = await ResourceLockManager.connect(database_url, name=TEST_LOCK_OWNER)
    runs: list[HeldRun] = []
    try:
        async with contextlib.AsyncExitStack() as held:
            for index in range(4):
                environment, gate = f"blip-{index}", tmp_path / f"ready-{index}"
                repo = create_sample_repo(tmp_path / f"repo{index}", free_port())  # repo:<name> differs too
                hold_health(platform, environment, gate)
                if index < 2:
                    await held.enter_async_context(
                        manager.acquire(f"env:{environment}", owner=TEST_LOCK_OWNER, ttl=60, wait_timeout=0)
                    )
                runs.append(HeldRun(start_deploy_run(platform, repo, environment), repo, environment, gate))
            for run in runs[:2]:
                await wait_for_run_event(
                    runtime, run.run_id, lambda e: e.kind == "node_started" and e.node == "deploy", "deploy"
                )
                await eventually(lambda r=run: waiting_for_lock(manager, f"env:{r.environment}"))
            for run in runs[2:]:
                await deploy_in_progress(runtime, run.run_id, platform, run.environment)
            yield runs
        for run in runs:
            run.gate.touch()
    finally:
        await manager.close()


async def eventually(check: Callable[[], Awaitable[bool]], what: str = "a run waiting for its lock") -> None:
    """Poll another process's state in the database (no event says a waiter queued)."""
    deadline = time.monotonic() + 60
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not in time")
        await asyncio.sleep(0.05)


def assert_all_succeeded_once_more_at_most(platform: Platform, runs: list[HeldRun]) -> None:
    with platform.client() as client:
        for run in runs:
            done = client.follow(str(run.run_id))
            assert done["status"] == "succeeded", (run.environment, done["error"])
            assert done["attempts"] <= 2, (run.environment, done["attempts"])
            assert_one_live_release(platform, run.environment, run.repo)
