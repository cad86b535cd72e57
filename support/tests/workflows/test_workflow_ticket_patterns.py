"""Phases that apply coordination patterns, carried out by the ticket workflow on the real services:
the review feedback loop (feature-dev, its model scripted, and code-review, through the shipped
`feedback` phase file) stops at approve and at its round limit; a sync point past its deadline
cancels the late task and proceeds or fails as declared; a parallel implementation splits a change by
module, implements the parts on branches of their own, merges them and tests the result (cicd)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from psycopg_pool import AsyncConnectionPool

from agent_orchestrator.coordination import PATTERNS_DIR
from agent_orchestrator.demo.sample_repo import SampleRepo
from agent_orchestrator.tasks import TaskStatus, TaskStore
from agent_orchestrator.tickets import PHASES_DIR, TicketStatus, TicketStore
from shared.bus import InterAgentEventType
from shared.git import run_git
from support.tests.workflows.flagship_platform import Platform, running_platform

pytestmark = pytest.mark.integration

# A review and an audit nobody in this platform serves (so it is late), met at a 3-second sync point.
TIMEBOX = """\
name: timebox_{on_timeout}
result: verdict
steps:
  - key: review
    capability: code_review
    request_type: REVIEW_CODE
    payload: {{repo: "{{repo.path}}", base: "{{repo.base_branch}}", head: "{{repo.head_branch}}"}}
  - key: audit
    capability: security_audit
    request_type: AUDIT_CODE
    payload: {{repo: "{{repo.path}}"}}
  - key: window
    sync: {{of: [review, audit], timeout_seconds: 3, on_timeout: {on_timeout}}}
  - key: verdict
    depends_on: [window]
    merge: {{of: [review], strategy: combine, field: verdict}}
"""
TIMEBOXED = """\
from_any_open: [BLOCKED]
phases:
  - name: REVIEW
    pattern: {{name: timebox_{on_timeout}}}
    next: [DONE]
  - name: DONE
    status: done
  - name: BLOCKED
    status: blocked
    return_to_previous: true
"""

# The change of the parallel implementation: three files in three folders (the root one of them),
# cut into two parts.
PARALLEL = """\
from_any_open: [BLOCKED]
phases:
  - name: IMPLEMENTATION
    pattern:
      name: parallel_implementation
      with:
        instruction: "{ticket.description}"
        files: [greeter/loud.py, tests/test_loud.py, LOUD.md]
        parts: 2
    next: [DONE]
  - name: DONE
    status: done
  - name: BLOCKED
    status: blocked
    return_to_previous: true
"""


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The shipped phase and pattern files, plus the timebox ones of these tests."""
    root = tmp_path_factory.mktemp("spec")
    phases, patterns = (
        shutil.copytree(PHASES_DIR, root / "phases"),
        shutil.copytree(PATTERNS_DIR, root / "patterns"),
    )
    for on_timeout in ("proceed", "fail"):
        (patterns / f"timebox_{on_timeout}.pattern.yaml").write_text(TIMEBOX.format(on_timeout=on_timeout))
        (phases / f"timeboxed_{on_timeout}.yaml").write_text(TIMEBOXED.format(on_timeout=on_timeout))
    (phases / "parallel.yaml").write_text(PARALLEL)
    return phases, patterns


@pytest.fixture(scope="module")
def platform(module_env: dict[str, str], log_dir: Path, folders: tuple[Path, Path]) -> Iterator[Platform]:
    phases, patterns = folders
    with running_platform(
        module_env,
        log_dir,
        ["code-review", "feature-dev", "cicd"],
        modules={"feature-dev": "support.tests.workflows.scripted_feature_dev"},
        DEVTOOLS_PHASES_DIR=str(phases),
        DEVTOOLS_PATTERNS_DIR=str(patterns),
    ) as running:
        yield running


@pytest.fixture
def tickets(pool: AsyncConnectionPool) -> TicketStore:
    return TicketStore(pool)


async def _open(platform: Platform, repo: SampleRepo, phase_file: str, description: str | None) -> UUID:
    """File the ticket through the API: the orchestrator reads the phase and pattern folders."""

    def create() -> dict[str, Any]:
        with platform.client() as client:
            return client.create_ticket(
                "Shout at people",
                str(repo.path),
                head=repo.feature,
                description=description,
                phase_file=phase_file,
            )

    return UUID((await asyncio.to_thread(create))["id"])


def _rest(platform: Platform, ticket_id: UUID) -> dict[str, Any]:
    with platform.client() as client:
        return client.follow_ticket(str(ticket_id))


async def test_the_review_feedback_loop_stops_when_the_review_approves(
    platform: Platform, pool: AsyncConnectionPool, tickets: TicketStore, sample: Callable[[], SampleRepo]
) -> None:
    repo = sample()
    ticket_id = await _open(platform, repo, "feedback", "Add greeter/shout.py with shout(name) and its test.")

    run = await asyncio.to_thread(_rest, platform, ticket_id)

    assert run["status"] == "succeeded", run.get("error")
    done = await tickets.get(ticket_id)
    assert (done.phase, done.status) == ("DONE", TicketStatus.DONE)
    rows = {t.key: t for t in await TaskStore(pool).list_tasks(ticket_id)}
    assert list(rows) == [
        "rounds-r1-implement",
        "rounds-r1-review",
        "rounds-r2-implement",
        "rounds-r2-review",
    ]
    assert rows["rounds-r1-review"].result["verdict"] == "request_changes"
    assert rows["rounds-r2-review"].result["verdict"] == "approve"
    # Round 2 was cut from round 1's branch and told round 1's findings.
    assert rows["rounds-r2-implement"].payload["base_ref"] == rows["rounds-r1-implement"].result["branch"]
    assert "hardcoded-password" in rows["rounds-r2-implement"].payload["instruction"]
    # The loop's result is the approved round's implementation; its branch holds the change.
    branch = done.context["rounds"]["branch"]
    assert branch == f"devtools/ticket-{ticket_id}-r2"
    shout = run_git(repo.path, "show", f"{branch}:greeter/shout.py")
    assert "def shout" in shout and "PASSWORD" not in shout
    kinds = await asyncio.to_thread(
        lambda: [e.kind for e in platform.client().events(str(ticket_id), follow=False)]
    )
    assert kinds.count("coordination_loop") == 2  # continue after round 1, done after round 2
    published = await asyncio.to_thread(platform.bus_events, str(ticket_id))
    loops = [
        (e.payload["status"], e.payload["round"])
        for e in published
        if e.event_type is InterAgentEventType.COORDINATION_DECIDED and e.payload["kind"] == "loop"
    ]
    assert loops == [("continue", 1), ("done", 2)]


async def test_the_review_feedback_loop_stops_at_its_round_limit(
    platform: Platform, pool: AsyncConnectionPool, tickets: TicketStore, sample: Callable[[], SampleRepo]
) -> None:
    repo = sample()
    ticket_id = await _open(platform, repo, "feedback", "Add greeter/shout.py, stubborn about its password.")

    run = await asyncio.to_thread(_rest, platform, ticket_id)

    assert run["status"] == "interrupted"  # waiting for a person
    [*_, last] = await tickets.history(ticket_id)
    blocked = await tickets.get(ticket_id)
    assert (blocked.phase, blocked.status) == ("BLOCKED", TicketStatus.BLOCKED)
    rows = await TaskStore(pool).list_tasks(ticket_id)
    reviews = [t.key for t in rows if t.request_type == "REVIEW_CODE"]
    # max_rounds is 3 in config/phases/feedback.yaml: three rounds, no fourth.
    assert reviews == ["rounds-r1-review", "rounds-r2-review", "rounds-r3-review"], last.reason
    assert {t.result["verdict"] for t in rows if t.request_type == "REVIEW_CODE"} == {"request_changes"}
    assert last.from_phase == "IMPLEMENTATION"
    assert 'rounds: 3 rounds and review.verdict is "request_changes", not "approve"' in last.reason


@pytest.mark.parametrize("on_timeout", ["proceed", "fail"])
async def test_a_sync_point_past_its_deadline_cancels_the_late_task(
    platform: Platform,
    pool: AsyncConnectionPool,
    tickets: TicketStore,
    sample: Callable[[], SampleRepo],
    on_timeout: str,
) -> None:
    repo = sample()
    ticket_id = await _open(platform, repo, f"timeboxed_{on_timeout}", None)

    run = await asyncio.to_thread(_rest, platform, ticket_id)

    rows = {t.key: t for t in await TaskStore(pool).list_tasks(ticket_id)}
    assert rows["review"].status is TaskStatus.SUCCEEDED
    assert rows["audit"].status is TaskStatus.CANCELLED  # nobody serves it: late at the deadline
    after = await tickets.get(ticket_id)
    if on_timeout == "proceed":
        assert run["status"] == "succeeded", run.get("error")
        assert after.phase == "DONE"
        assert after.context["window"]["late"] == ["audit"]
        assert after.context["verdict"]["value"] == {"review": rows["review"].result["verdict"]}
    else:
        assert run["status"] == "interrupted"
        assert after.phase == "BLOCKED"
        [*_, last] = await tickets.history(ticket_id)
        assert "window: deadline" in last.reason and "audit unfinished" in last.reason
        assert "verdict: not run: window did not succeed" in last.reason
    kinds = await asyncio.to_thread(
        lambda: [e.kind for e in platform.client().events(str(ticket_id), follow=False)]
    )
    assert "coordination_sync" in kinds


async def test_a_change_is_implemented_in_parallel_parts_merged_and_tested(
    platform: Platform, pool: AsyncConnectionPool, tickets: TicketStore, sample: Callable[[], SampleRepo]
) -> None:
    repo = sample()
    ticket_id = await _open(platform, repo, "parallel", "Greet loudly: loud(name), its test and its page.")

    run = await asyncio.to_thread(_rest, platform, ticket_id)

    assert run["status"] == "succeeded", run.get("error")
    done = await tickets.get(ticket_id)
    assert done.phase == "DONE"
    rows = {t.key: t for t in await TaskStore(pool).list_tasks(ticket_id)}
    assert list(rows) == ["implement.1", "implement.2", "integrate", "tests"]
    assert all(t.status is TaskStatus.SUCCEEDED for t in rows.values())
    # Split by module into two parts, each on a branch of its own with only its files.
    parts = [rows["implement.1"].payload["files"], rows["implement.2"].payload["files"]]
    assert sorted(f for part in parts for f in part) == [
        "LOUD.md",
        "greeter/loud.py",
        "tests/test_loud.py",
    ]
    for key in ("implement.1", "implement.2"):
        branch = rows[key].result["branch"]
        changed = run_git(repo.path, "diff", "--name-only", "main", branch).split()
        assert sorted(changed) == sorted(rows[key].payload["files"])
    # The parts' branches were combined, merged into one, and the tests ran there and passed.
    merged = f"devtools/ticket-{ticket_id}"
    assert rows["integrate"].result["branch"] == merged
    assert sorted(run_git(repo.path, "diff", "--name-only", "main", merged).split()) == [
        "LOUD.md", "greeter/loud.py", "tests/test_loud.py",
    ]  # fmt: skip
    assert rows["tests"].payload["ref"] == merged
    assert rows["tests"].result["status"] == "passed"
    assert sorted(done.context["branches"]["value"].values()) == sorted(
        rows[k].result["branch"] for k in ("implement.1", "implement.2")
    )
    kinds = await asyncio.to_thread(
        lambda: [e.kind for e in platform.client().events(str(ticket_id), follow=False)]
    )
    assert {"coordination_split", "coordination_join", "coordination_merge"} <= set(kinds)
