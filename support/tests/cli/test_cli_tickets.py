"""`devtools ticket ...` and `devtools tasks ...` as a user runs them: the CLI process against a real
orchestrator service (DEVTOOLS_ORCHESTRATOR_URL points at it). No agent is registered, so a ticket's
tasks stay ready and its run waits for them: what is tested is the CLI over the API, not the agents."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.tests.agents.processes import REPO_ROOT
from support.tests.gitrepo import GitRepo
from support.tests.workflows.flagship_platform import Platform, running_platform

pytestmark = pytest.mark.integration
UUID_PATTERN = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
CREATED = re.compile(rf"ticket ({UUID_PATTERN}) created")
INITIAL_TASKS = ("outline", "baseline_review", "baseline_tests")


@pytest.fixture(scope="module")
def platform(module_env: dict[str, str], log_dir: Path) -> Iterator[Platform]:
    with running_platform(module_env, log_dir, []) as running:
        yield running


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    git = GitRepo(tmp_path_factory.mktemp("cli-tickets") / "service")
    git.commit("first", {"app.py": "print('hello')\n"})
    return git.path


def cli_env(platform: Platform) -> dict[str, str]:
    return {
        **platform.env,
        "DEVTOOLS_ORCHESTRATOR_URL": platform.orchestrator.url,
        "COLUMNS": "250",
        "PYTHONUNBUFFERED": "1",
    }


def devtools(platform: Platform, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent_orchestrator", *args],
        cwd=REPO_ROOT, env=cli_env(platform), capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def wait_for_tasks(platform: Platform, ticket_id: str, count: int) -> None:
    """Read the ticket's events (pushed by the server) until `count` tasks became ready."""
    ready = 0
    with platform.client() as client:
        for event in client.ticket_events(ticket_id):
            ready += event.kind == "task_ready"
            if ready >= count:
                return
    raise AssertionError(f"the event stream of ticket {ticket_id} ended before {count} tasks were ready")


def test_create_list_show_tasks_history_cancel(platform: Platform, repo: Path) -> None:
    options = ["--head", "feature/health", "--priority", "high", "--label", "cli", "--no-follow"]
    created = devtools(
        platform, "ticket", "create", "--repo", str(repo), "--title", "Add a health endpoint", *options
    )
    assert created.returncode == 0, created.stdout + created.stderr
    match = CREATED.search(created.stdout)
    assert match, created.stdout
    ticket_id = match.group(1)
    wait_for_tasks(platform, ticket_id, len(INITIAL_TASKS))

    listed = devtools(platform, "ticket", "list", "--label", "cli", "--priority", "high")
    assert listed.returncode == 0 and ticket_id in listed.stdout and "INITIAL" in listed.stdout
    assert ticket_id not in devtools(platform, "ticket", "list", "--status", "done").stdout
    shown = devtools(platform, "ticket", "show", ticket_id)
    assert shown.returncode == 0, shown.stderr
    assert "Add a health endpoint" in shown.stdout and "feature/health" in shown.stdout
    assert "waiting for tasks" in shown.stdout and "3 ready" in shown.stdout
    tasks = devtools(platform, "tasks", "list", "--ticket", ticket_id)
    assert tasks.returncode == 0, tasks.stderr
    assert all(key in tasks.stdout for key in INITIAL_TASKS) and "ready" in tasks.stdout
    none = devtools(
        platform, "tasks", "list", "--ticket", ticket_id, "--status", "failed", "--status", "succeeded"
    )
    assert none.returncode == 0 and not any(key in none.stdout for key in INITIAL_TASKS)
    with platform.client() as client:
        outline = next(t for t in client.list_tasks(ticket_id) if t["key"] == "outline")
    assert outline["id"] in tasks.stdout
    task = devtools(platform, "tasks", "show", outline["id"])
    assert task.returncode == 0 and "documentation / GENERATE_DOCS" in task.stdout

    cancelled = devtools(platform, "ticket", "cancel", ticket_id)
    assert cancelled.returncode == 0 and f"ticket {ticket_id} cancelled" in cancelled.stdout
    after = devtools(platform, "tasks", "list", "--ticket", ticket_id, "--status", "cancelled")
    assert all(key in after.stdout for key in INITIAL_TASKS)
    history = devtools(platform, "ticket", "history", ticket_id)
    assert history.returncode == 0 and "CANCELLED" in history.stdout and "operator" in history.stdout
    again = devtools(platform, "ticket", "cancel", ticket_id)
    assert again.returncode == 2 and "409" in again.stderr and "terminal" in again.stderr


def test_following_a_ticket_shows_its_tasks_and_ends_with_its_run(platform: Platform, repo: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "agent_orchestrator",
        "ticket",
        "create",
        "--repo",
        str(repo),
        "--title",
        "Follow me",
    ]
    with subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=cli_env(platform),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as follower:
        assert follower.stdout is not None
        lines: list[str] = []
        for line in follower.stdout:  # the follower prints the id, then progress as it happens
            lines.append(line)
            if sum("ready" in seen for seen in lines) == len(INITIAL_TASKS):
                break
        match = CREATED.search("".join(lines))
        assert match, lines
        with platform.client() as client:
            client.cancel_ticket(match.group(1))
        rest, errors = follower.communicate(timeout=60)
    output = "".join(lines) + rest
    assert follower.returncode == 1, output + errors
    assert all(f"INITIAL {key} ready" in output for key in INITIAL_TASKS)
    assert "INITIAL outline cancelled" in output and "run cancelled" in output
    assert f"ticket {match.group(1)} is CANCELLED" in output


def test_bad_input_exits_2_naming_the_field(platform: Platform, repo: Path, tmp_path: Path) -> None:
    not_a_repo = devtools(
        platform, "ticket", "create", "--repo", str(tmp_path), "--title", "x", "--no-follow"
    )
    assert (
        not_a_repo.returncode == 2
        and "repo.path" in not_a_repo.stderr
        and "not a git repository" in not_a_repo.stderr
    )
    blank = devtools(platform, "ticket", "create", "--repo", str(repo), "--title", "  ", "--no-follow")
    assert blank.returncode == 2 and "title" in blank.stderr
    base = devtools(platform, "ticket", "create", "--repo", str(repo), "--title", "x", "--base", "nope")
    assert base.returncode == 2 and "repo.base_branch" in base.stderr
    with platform.client() as client:
        assert not [t for t in client.list_tickets(limit=500) if t["title"] == "x"]  # nothing was filed
    limit = devtools(platform, "ticket", "list", "--limit", "0")
    assert limit.returncode == 2 and "limit" in limit.stderr
    status = devtools(platform, "tasks", "list", "--status", "sleeping")
    assert status.returncode == 2 and "--status" in status.stderr
    unknown = devtools(platform, "tasks", "show", "00000000-0000-0000-0000-000000000000")
    assert unknown.returncode == 2 and "404" in unknown.stderr
    move = devtools(platform, "ticket", "transition", "00000000-0000-0000-0000-000000000000", "BLOCKED")
    assert move.returncode == 2 and "404" in move.stderr
