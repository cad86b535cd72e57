"""A ticket end to end through the real services: the registry, the documentation, code-review,
cicd and infrastructure agents and the orchestrator service (its run workers, the task dispatcher
and the ticket waker), as processes, on the sample repository."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from agent_orchestrator.demo.sample_repo import SampleRepo, add_failing_test_branch
from agent_orchestrator.runs.queue import RunQueue
from agent_orchestrator.tasks import TaskStatus, TaskStore
from agent_orchestrator.tickets import (
    PhaseTransition,
    RepoRef,
    TicketCreate,
    TicketStatus,
    TicketStore,
    TicketUpdate,
)
from agent_orchestrator.tickets.gates import GateStore
from agent_orchestrator.tickets.lifecycle import open_ticket
from shared.bus import InterAgentEventType
from support.tests.workflows.flagship_platform import Platform, running_platform

pytestmark = pytest.mark.integration

PHASES = ["INITIAL", "IMPLEMENTATION", "INTEGRATION", "REFACTORING", "DONE"]


@pytest.fixture(scope="module")
def platform(module_env: dict[str, str], log_dir: Path) -> Iterator[Platform]:
    agents = ["documentation", "code-review", "cicd", "infrastructure"]
    with running_platform(module_env, log_dir, agents) as running:
        yield running


def follow(platform: Platform, ticket_id: UUID, *, approve: bool | None = True) -> dict[str, Any]:
    """The ticket's run once it rests: finished, or waiting for a person (not for its tasks). A gate's
    approval question is answered with `approve` (None: left waiting) and the ticket followed on."""
    with platform.client() as client:
        while True:
            run = client.follow_ticket(str(ticket_id))
            waiting = client.get_ticket(str(ticket_id))["waiting_for"]
            if approve is None or run["status"] != "interrupted" or waiting != "approval":
                return run
            client.decide(str(ticket_id), approve, comment="from the tests")


async def test_a_ticket_goes_through_every_phase_with_real_work(
    platform: Platform, pool: AsyncConnectionPool, sample: Callable[[], SampleRepo]
) -> None:
    repo = sample()
    tickets, tasks = TicketStore(pool), TaskStore(pool)
    ticket = await open_ticket(
        RunQueue(pool),
        tickets,
        TicketCreate(
            title="Greet people by name",
            repo=RepoRef(path=str(repo.path), head_branch=repo.feature),
            created_by="alice",
        ),
    )

    run = await asyncio.to_thread(follow, platform, ticket.id)

    assert run["status"] == "succeeded", run.get("error")
    done = await tickets.get(ticket.id)
    assert (done.phase, done.status) == ("DONE", TicketStatus.DONE)
    assert [h.to_phase for h in await tickets.history(ticket.id)] == PHASES
    all_tasks = await tasks.list_tasks(ticket.id)
    assert all_tasks and all(t.status is TaskStatus.SUCCEEDED for t in all_tasks), [
        (t.key, t.status, t.error) for t in all_tasks if t.status is not TaskStatus.SUCCEEDED
    ]
    # Each phase ran on the agents: the context carries every task's result under its key.
    assert {t.key for t in all_tasks} <= set(done.context)
    assert done.context["tests"]["status"] == "passed"
    # Deployed to staging under the agent's lock, and serving.
    async with httpx.AsyncClient(timeout=10) as http:
        assert (await http.get(repo.url + "/")).status_code == 200
    report = run["result"]["final_result"]["report"]
    assert "DONE" in report and "| INTEGRATION | deploy |" in report
    # Every gate passed, with what it measured; IMPLEMENTATION's after a person's approval.
    results = await GateStore(pool).results(ticket.id)
    assert [(r.phase, r.verdict) for r in results if r.verdict != "waiting"] == [
        ("IMPLEMENTATION", "passed"), ("INTEGRATION", "passed"), ("REFACTORING", "passed"),
    ]  # fmt: skip
    integration = next(r for r in results if r.phase == "INTEGRATION")
    measured = {c.name: c.measured for c in integration.criteria}
    assert any(v == {"passed": 2, "failed": 0, "errors": 0, "status": "passed"} for v in measured.values()), (
        measured
    )
    approved = next(r for r in results if r.phase == "IMPLEMENTATION" and r.verdict == "passed")
    assert "from the tests" in str(approved.model_dump()) or "approval" in {c.kind for c in approved.criteria}
    # Every task transition is an event of the ticket's run.
    kinds = await asyncio.to_thread(lambda: [e.kind for e in platform.client().events(str(ticket.run_id))])
    assert "task_succeeded" in kinds and "ticket_phase" in kinds
    # ... and published on the bus: delegated by the dispatcher, completed by the agents, phases moved.
    published = {e.event_type for e in await asyncio.to_thread(platform.bus_events, str(ticket.id))}
    assert {
        InterAgentEventType.TASK_DELEGATED,
        InterAgentEventType.TASK_COMPLETED,
        InterAgentEventType.TICKET_PHASE_CHANGED,
    } <= published


async def test_a_ticket_without_a_pushed_branch_waits_blocked_for_a_person(
    platform: Platform, pool: AsyncConnectionPool, sample: Callable[[], SampleRepo]
) -> None:
    repo = sample()
    tickets, queue = TicketStore(pool), RunQueue(pool)
    ticket = await open_ticket(
        queue,
        tickets,
        TicketCreate(title="No branch yet", repo=RepoRef(path=str(repo.path)), created_by="bob"),
    )

    waiting = await asyncio.to_thread(follow, platform, ticket.id)

    assert waiting["status"] == "interrupted"
    blocked = await tickets.get(ticket.id)
    assert (blocked.phase, blocked.status) == ("BLOCKED", TicketStatus.BLOCKED)
    [*_, last] = await tickets.history(ticket.id)
    assert last.from_phase == "IMPLEMENTATION" and "{repo.head_branch}" in last.reason
    # The person pushes the branch, names it and sends the ticket back: the run goes on to the end.
    updated = await tickets.update(ticket.id, blocked.version, TicketUpdate(head_branch=repo.feature))
    await tickets.transition(
        ticket.id,
        PhaseTransition(
            to_phase="IMPLEMENTATION", actor="bob", reason="pushed", expected_version=updated.version
        ),
    )
    assert await queue.resume(ticket.id, {"by": "bob"}, "bob") is not None
    run = await asyncio.to_thread(follow, platform, ticket.id)
    assert run["status"] == "succeeded", run.get("error")
    assert (await tickets.get(ticket.id)).phase == "DONE"


async def test_a_planned_ticket_runs_the_orchestrator_agents_plan(
    platform: Platform, pool: AsyncConnectionPool, sample: Callable[[], SampleRepo]
) -> None:
    """PLAN asks the orchestrator agent (DECOMPOSE_TASK, the rule-based catalogue) for a plan; EXECUTE
    runs its steps on the documentation agent with the plan's DAG."""
    repo = sample()
    readme = repo.path / "README.md"
    readme.write_text(readme.read_text() + "\n<!-- devtools:api:start -->\n<!-- devtools:api:end -->\n")
    await asyncio.to_thread(git, repo.path, "commit", "-qam", "README: an API section")
    tickets, tasks = TicketStore(pool), TaskStore(pool)
    ticket = await open_ticket(
        RunQueue(pool),
        tickets,
        TicketCreate(
            title="Regenerate the documentation",
            repo=RepoRef(path=str(repo.path)),
            created_by="carol",
            phase_file="planned",
        ),
    )

    run = await asyncio.to_thread(follow, platform, ticket.id)

    assert run["status"] == "succeeded", run.get("error")
    done = await tickets.get(ticket.id)
    assert [h.to_phase for h in await tickets.history(ticket.id)] == ["PLAN", "EXECUTE", "DONE"]
    plan = done.context["plan"]
    executed = {t.key: t for t in await tasks.list_tasks(ticket.id, phase="EXECUTE")}
    assert set(executed) == {step["id"] for step in plan["steps"]}
    assert all(t.status is TaskStatus.SUCCEEDED for t in executed.values())
    # The DAG held: the README was updated after the three documents it depends on.
    readme_task = executed["readme"]
    documents = [executed[key] for key in ("api", "user_guide", "deployment_guide")]
    assert readme_task.started_at is not None
    assert all(d.finished_at is not None and d.finished_at <= readme_task.started_at for d in documents)
    # ... on a branch of its own, with the API section filled from the repository's code.
    result = readme_task.result
    assert result["changed"] is True and result["mode"] == "branch"
    shown = await asyncio.to_thread(git, repo.path, "show", f"{result['branch']}:README.md")
    assert "greet" in shown.split("<!-- devtools:api:start -->", 1)[1]


def git(path: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=path, capture_output=True, text=True, check=True).stdout


async def test_a_ticket_whose_tests_fail_is_blocked_in_integration_and_never_deploys(
    platform: Platform, pool: AsyncConnectionPool, sample: Callable[[], SampleRepo]
) -> None:
    repo = sample()
    branch = await asyncio.to_thread(add_failing_test_branch, repo)
    tickets, tasks, gates = TicketStore(pool), TaskStore(pool), GateStore(pool)
    releases_before = platform.releases("staging")
    ticket = await open_ticket(
        RunQueue(pool),
        tickets,
        TicketCreate(title="Shout", repo=RepoRef(path=str(repo.path), head_branch=branch), created_by="dave"),
    )

    run = await asyncio.to_thread(follow, platform, ticket.id)

    assert run["status"] == "interrupted"  # waits for a person
    blocked = await tickets.get(ticket.id)
    assert (blocked.phase, blocked.status) == ("BLOCKED", TicketStatus.BLOCKED)
    [*_, last] = await tickets.history(ticket.id)
    assert last.from_phase == "INTEGRATION" and "gate failed" in last.reason and "test_shout" in last.reason
    integration = {t.key: t for t in await tasks.list_tasks(ticket.id, phase="INTEGRATION")}
    assert integration["tests"].status is TaskStatus.FAILED
    assert (integration["tests"].error_class, integration["tests"].error_kind) == (
        "permanent",
        "tests_failed",
    )
    assert integration["deploy"].status is TaskStatus.BLOCKED  # it never started
    assert platform.releases("staging") == releases_before
    [result] = [r for r in await gates.results(ticket.id) if r.phase == "INTEGRATION"]
    assert result.verdict == "failed" and any("test_shout" in (c.detail or "") for c in result.criteria)


async def test_a_rejected_approval_blocks_the_ticket_before_integration(
    platform: Platform, pool: AsyncConnectionPool, sample: Callable[[], SampleRepo]
) -> None:
    repo = sample()
    tickets = TicketStore(pool)
    ticket = await open_ticket(
        RunQueue(pool),
        tickets,
        TicketCreate(
            title="Not now", repo=RepoRef(path=str(repo.path), head_branch=repo.feature), created_by="erin"
        ),
    )

    waiting = await asyncio.to_thread(follow, platform, ticket.id, approve=None)
    assert waiting["status"] == "interrupted"
    assert (await tickets.get(ticket.id)).phase == "IMPLEMENTATION"
    run = await asyncio.to_thread(follow, platform, ticket.id, approve=False)

    assert run["status"] == "interrupted"
    blocked = await tickets.get(ticket.id)
    assert (blocked.phase, blocked.status) == ("BLOCKED", TicketStatus.BLOCKED)
    [*_, last] = await tickets.history(ticket.id)
    assert last.from_phase == "IMPLEMENTATION" and "gate failed" in last.reason


async def test_three_reviews_vote_through_the_majority_vote_pattern(
    platform: Platform, pool: AsyncConnectionPool, sample: Callable[[], SampleRepo]
) -> None:
    """The `voted` phase file applies majority_vote: three REVIEW_CODE tasks on the code-review agent,
    joined, their verdict merged by majority into the ticket's context."""
    repo = sample()
    tickets, tasks = TicketStore(pool), TaskStore(pool)
    ticket = await open_ticket(
        RunQueue(pool),
        tickets,
        TicketCreate(
            title="Vote on it",
            repo=RepoRef(path=str(repo.path), head_branch=repo.feature),
            created_by="frank",
            phase_file="voted",
        ),
    )

    run = await asyncio.to_thread(follow, platform, ticket.id)

    assert run["status"] == "succeeded", run.get("error")
    done = await tickets.get(ticket.id)
    assert done.phase == "DONE"
    reviews = await tasks.list_tasks(ticket.id, phase="REVIEW")
    assert sorted(t.key for t in reviews) == ["review.1", "review.2", "review.3"]
    assert {t.status for t in reviews} == {TaskStatus.SUCCEEDED}
    verdict = done.context["verdict"]
    assert (verdict["strategy"], verdict["value"], verdict["decided"]) == ("majority", "approve", True)
    assert done.context["reviewed"]["status"] == "ready"
    kinds = await asyncio.to_thread(lambda: [e.kind for e in platform.client().events(str(ticket.id))])
    coordination = [k for k in kinds if k.startswith("coordination_")]
    assert sorted(coordination) == [
        "coordination_join", "coordination_merge", "coordination_merge", "coordination_split",
    ]  # fmt: skip
    published = await asyncio.to_thread(platform.bus_events, str(ticket.id))
    votes = [e.payload for e in published if e.event_type is InterAgentEventType.COORDINATION_DECIDED]
    assert sorted((v["kind"], v["key"]) for v in votes) == [
        ("join", "reviewed"), ("merge", "findings"), ("merge", "verdict"), ("split", "review"),
    ]  # fmt: skip
