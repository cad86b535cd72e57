"""A ticket under crashes: the orchestrator process that runs its workflow, its dispatcher and its
waker is killed with SIGKILL while the ticket's INTEGRATION tasks are at work; another orchestrator
process carries the ticket to DONE. Every task is recorded once, and the app is released once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg_pool import AsyncConnectionPool

from agent_orchestrator.demo.sample_repo import create_sample_repo
from agent_orchestrator.runs.queue import RunQueue
from agent_orchestrator.runs.runtime import RunsRuntime
from agent_orchestrator.tasks import TaskStatus, TaskStore
from agent_orchestrator.tickets import RepoRef, TicketCreate, TicketStatus, TicketStore, open_ticket
from support.tests.agents.processes import free_port
from support.tests.chaos.orchestrator_kill import kill_orchestrator_when
from support.tests.workflows.flagship_platform import Platform, running_platform

pytestmark = pytest.mark.chaos
ENV = "staging"


@pytest.fixture(scope="module")
def platform(module_env: dict[str, str], log_dir: Path) -> Iterator[Platform]:
    agents = ["documentation", "code-review", "cicd", "infrastructure"]
    with running_platform(module_env, log_dir, agents, DEVTOOLS_ORCHESTRATOR_LEASE_SECONDS="2") as running:
        yield running


async def test_orchestrator_killed_mid_ticket_another_carries_it_to_done(
    platform: Platform, runtime: RunsRuntime, tmp_path: Path
) -> None:
    repo = create_sample_repo(tmp_path / "repo", free_port())
    pool: AsyncConnectionPool = runtime.pool
    tickets = TicketStore(pool)
    ticket = await open_ticket(
        RunQueue(pool),
        tickets,
        TicketCreate(
            title="Ship it", repo=RepoRef(path=str(repo.path), head_branch=repo.feature), created_by="ops"
        ),
    )

    # A person approves the branch for staging (IMPLEMENTATION's gate) ...
    with platform.client() as client:
        waiting = await asyncio.to_thread(client.follow_ticket, str(ticket.id))
        assert waiting["status"] == "interrupted"
        assert client.get_ticket(str(ticket.id))["waiting_for"] == "approval"
        client.decide(str(ticket.id), True, comment="ship it")
    # ... and the tests of INTEGRATION are running on the cicd agent when the orchestrator dies.
    await kill_orchestrator_when(
        runtime,
        ticket.id,  # the ticket's run has the ticket's id
        platform,
        lambda e: e.kind == "task_running" and e.data.get("key") == "tests",
        "the tests running",
    )
    survivor = platform.start_orchestrator("orchestrator-b")
    with platform.client(survivor) as client:
        run = await asyncio.to_thread(client.follow_ticket, str(ticket.id))

    assert run["status"] == "succeeded", run.get("error")
    done = await tickets.get(ticket.id)
    assert (done.phase, done.status) == ("DONE", TicketStatus.DONE)
    tasks = await TaskStore(pool).list_tasks(ticket.id)
    assert {t.status for t in tasks} == {TaskStatus.SUCCEEDED}
    # Nothing ran twice: the agents recorded their own outcomes while no orchestrator was alive.
    assert {t.key: t.failures for t in tasks} == {t.key: 0 for t in tasks}
    assert len(platform.releases(ENV)) == 1
