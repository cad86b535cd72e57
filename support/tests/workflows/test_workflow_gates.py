"""A gate's threshold on a value the agents measure, through the real services: a phase whose tests
run with changed-line coverage (cicd, coverage.py) and whose gate requires at least 90 % of the changed
lines covered. A branch that adds code its tests do not reach fails the gate with the measured value;
one whose tests cover it passes. The phase file is the test's own (DEVTOOLS_PHASES_DIR)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import yaml
from psycopg_pool import AsyncConnectionPool

from agent_orchestrator.demo.sample_repo import create_sample_repo
from agent_orchestrator.runs.queue import RunQueue
from agent_orchestrator.tickets import RepoRef, TicketCreate, TicketStatus, TicketStore, open_ticket
from agent_orchestrator.tickets.gates import GateStore
from shared.git import run_git
from support.tests.agents.processes import free_port
from support.tests.workflows.flagship_platform import Platform, running_platform

pytestmark = pytest.mark.integration

COVERED = {
    "description": "Tests with changed-line coverage, gated at 90 %.",
    "from_any_open": ["BLOCKED", "CANCELLED"],
    "phases": [
        {
            "name": "TEST",
            "next": ["DONE"],
            "tasks": [
                {
                    "key": "tests",
                    "capability": "cicd",
                    "request_type": "RUN_PIPELINE",
                    "payload": {
                        "repo": "{repo.path}",
                        "ref": "{repo.head_branch}",
                        "coverage_base": "{repo.base_branch}",
                    },
                }
            ],
            "gate": {
                "criteria": [
                    {"kind": "threshold", "task": "tests", "measure": "tests.all_passed", "equals": True},
                    {
                        "kind": "threshold",
                        "task": "tests",
                        "measure": "coverage.changed_lines_percent",
                        "min": 90,
                    },
                ],
                "on_fail": {"action": "block"},
            },
        },
        {"name": "DONE", "status": "done"},
        {"name": "BLOCKED", "status": "blocked", "return_to_previous": True},
        {"name": "CANCELLED", "status": "cancelled"},
    ],
}


@pytest.fixture(scope="module")
def phases_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("phases")
    (folder / "covered.yaml").write_text(yaml.safe_dump(COVERED, sort_keys=False))
    return folder


@pytest.fixture(scope="module")
def platform(module_env: dict[str, str], log_dir: Path, phases_dir: Path) -> Iterator[Platform]:
    with running_platform(module_env, log_dir, ["cicd"], DEVTOOLS_PHASES_DIR=str(phases_dir)) as running:
        yield running


def follow(platform: Platform, ticket_id: UUID) -> dict[str, Any]:
    with platform.client() as client:
        return client.follow_ticket(str(ticket_id))


def _branch(path: Path, name: str, files: dict[str, str]) -> None:
    run_git(path, "checkout", "-q", "-b", name, "main")
    for relative, text in files.items():
        (path / relative).write_text(text)
    run_git(path, "add", "-A")
    run_git(path, "commit", "-q", "-m", name)
    run_git(path, "checkout", "-q", "main")


UNTESTED = '''"""Greetings for people."""


def greet(name: str, *, punctuation: str = "!") -> str:
    """Say hello to `name`."""
    return f"Hello, {name}{punctuation}"


def shout(name: str) -> str:
    """Greet loudly: no test calls it."""
    loud = greet(name).upper()
    return loud
'''


async def _ticket(
    pool: AsyncConnectionPool, phases_dir: Path, tmp_path: Path, branch: str, files: dict[str, str]
) -> UUID:
    repo = create_sample_repo(tmp_path / "repo", free_port())
    await asyncio.to_thread(_branch, repo.path, branch, files)
    ticket = await open_ticket(
        RunQueue(pool),
        TicketStore(pool, phases_dir=phases_dir),
        TicketCreate(
            title="Covered?", repo=RepoRef(path=str(repo.path), head_branch=branch), created_by="gina",
            phase_file="covered",
        ),
    )  # fmt: skip
    return ticket.id


async def test_coverage_below_the_threshold_fails_the_gate_with_the_measured_value(
    platform: Platform, pool: AsyncConnectionPool, phases_dir: Path, tmp_path: Path
) -> None:
    ticket_id = await _ticket(pool, phases_dir, tmp_path, "feature/shout", {"greeter/__init__.py": UNTESTED})

    run = await asyncio.to_thread(follow, platform, ticket_id)

    assert run["status"] == "interrupted"  # blocked: waits for a person
    ticket = await TicketStore(pool, phases_dir=phases_dir).get(ticket_id)
    assert (ticket.phase, ticket.status) == ("BLOCKED", TicketStatus.BLOCKED)
    [result] = await GateStore(pool).results(ticket_id)
    coverage = next(c for c in result.criteria if "coverage" in c.name)
    assert result.verdict == "failed" and coverage.passed is False
    measured = coverage.measured["changed_lines_percent"]
    assert measured < 90 and coverage.measured["covered_lines"] < coverage.measured["changed_lines"], coverage
    assert f"{measured:g}% < 90%" in coverage.detail, coverage.detail


async def test_covered_changes_pass_the_gate(
    platform: Platform, pool: AsyncConnectionPool, phases_dir: Path, tmp_path: Path
) -> None:
    tested = UNTESTED + "\n"
    test = (
        'from greeter import shout\n\n\ndef test_shout() -> None:\n    assert shout("ada") == "HELLO, ADA!"\n'
    )
    ticket_id = await _ticket(
        pool,
        phases_dir,
        tmp_path,
        "feature/tested",
        {"greeter/__init__.py": tested, "tests/test_shout.py": test},
    )

    run = await asyncio.to_thread(follow, platform, ticket_id)

    assert run["status"] == "succeeded", run.get("error")
    [result] = await GateStore(pool).results(ticket_id)
    coverage = next(c for c in result.criteria if "coverage" in c.name)
    assert result.verdict == "passed" and coverage.measured["changed_lines_percent"] == 100.0, coverage
