"""`devtools run|status|approve|reject|history` as a user runs them: the CLI process against the
real orchestrator service and agents (DEVTOOLS_ORCHESTRATOR_URL points at them)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_orchestrator.demo.sample_repo import SampleRepo, add_secret_branch, create_sample_repo
from support.tests.agents.processes import REPO_ROOT, free_port
from support.tests.workflows.flagship_platform import Platform, running_platform

pytestmark = pytest.mark.integration
AGENTS = ["code-review", "cicd", "infrastructure", "documentation"]


@pytest.fixture(scope="module")
def platform(module_env: dict[str, str], log_dir: Path) -> Iterator[Platform]:
    with running_platform(module_env, log_dir, AGENTS) as running:
        yield running


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> SampleRepo:
    return create_sample_repo(tmp_path_factory.mktemp("cli") / "repo", free_port())


def devtools(platform: Platform, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {**platform.env, "DEVTOOLS_ORCHESTRATOR_URL": platform.orchestrator.url, "COLUMNS": "200", **extra}
    return subprocess.run(
        [sys.executable, "-m", "agent_orchestrator", *args],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip


def test_run_docs_shows_each_step_and_the_report(
    platform: Platform, repo: SampleRepo, tmp_path: Path
) -> None:
    done = devtools(platform, "run", "docs", "--repo", str(repo.path), "--out", str(repo.path / "out"))

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("▶ generate") == 3 and "✔ write" in done.stdout
    assert "Documentation" in done.stdout and "succeeded" in done.stdout
    assert (repo.path / "out" / "api.md").exists()
    # Outside the repository and the output root: refused before anything runs, naming the field.
    outside = devtools(platform, "run", "docs", "--repo", str(repo.path), "--out", str(tmp_path / "out"))
    assert outside.returncode == 2 and "input.output_dir" in outside.stderr
    assert not (tmp_path / "out").exists()


def test_production_deploy_waits_then_approve_finishes_it(platform: Platform, repo: SampleRepo) -> None:
    waiting = devtools(platform, "run", "pr-deployment", "--repo", str(repo.path), "--head", repo.feature,
                       "--env", "production")  # fmt: skip

    assert waiting.returncode == 3, waiting.stdout + waiting.stderr
    match = re.search(r"devtools approve ([0-9a-f-]{36})", waiting.stdout)
    assert match, waiting.stdout
    run_id = match.group(1)
    assert "environment 'production' is protected" in waiting.stdout

    approved = devtools(platform, "approve", run_id, "--comment", "looks good")
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert "✔ deploy" in approved.stdout and "approved by operator" in approved.stdout

    status = devtools(platform, "status", run_id)
    assert status.returncode == 0 and "pr_deployment succeeded" in status.stdout
    listing = devtools(platform, "status")
    assert listing.returncode == 0 and run_id in listing.stdout
    history = devtools(platform, "history", run_id)
    assert history.returncode == 0 and "deploy" in history.stdout and "approval" in history.stdout
    again = devtools(platform, "reject", run_id)
    assert again.returncode == 2 and "409" in again.stderr


def test_a_blocked_pr_exits_non_zero_with_the_reason(platform: Platform, repo: SampleRepo) -> None:
    branch = add_secret_branch(repo)
    done = devtools(
        platform, "run", "pr-deployment", "--repo", str(repo.path), "--head", branch, "--env", "qa"
    )
    assert done.returncode == 1
    assert "code review requested changes" in done.stdout and "aws-access-key-id" in done.stdout


def test_bad_input_exits_2_naming_the_field(platform: Platform, repo: SampleRepo, tmp_path: Path) -> None:
    done = devtools(
        platform, "run", "docs", "--repo", str(repo.path), "--out", str(repo.path / "o"), "--types", "nope"
    )
    assert done.returncode == 2 and "input.doc_types" in done.stderr
    unknown = devtools(platform, "status", "00000000-0000-0000-0000-000000000000")
    assert unknown.returncode == 2 and "404" in unknown.stderr


def test_a_refused_token_exits_5_saying_which_variable_to_set(platform: Platform, repo: SampleRepo) -> None:
    wrong = devtools(platform, "reject", "00000000-0000-0000-0000-000000000000", DEVTOOLS_API_TOKEN="not-it")
    assert wrong.returncode == 5, wrong.stdout + wrong.stderr
    assert "401" in wrong.stderr and "DEVTOOLS_API_TOKEN" in wrong.stderr
    # Not "unavailable" (4): the orchestrator answered; and with the right token the same call is bad input.
    unknown = devtools(platform, "reject", "00000000-0000-0000-0000-000000000000")
    assert unknown.returncode == 2 and "404" in unknown.stderr
