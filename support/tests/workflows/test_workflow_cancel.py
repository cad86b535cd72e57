"""Cancelling a run during a long test step, through the real services: `devtools cancel` (the API)
reaches the cicd agent serving the step, which kills the test run's whole process group and frees
its slot; the run ends `cancelled` and nothing deploys."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent_orchestrator.demo.sample_repo import GREETER, create_sample_repo
from shared.process import process_group_alive
from support.tests.agents.processes import REPO_ROOT, free_port, wait_until
from support.tests.workflows.flagship_platform import Platform, running_platform

pytestmark = pytest.mark.integration

ENV = "cancel-env"


@pytest.fixture(scope="module")
def platform(module_env: dict[str, str], log_dir: Path) -> Iterator[Platform]:
    with running_platform(module_env, log_dir, ["code-review", "cicd"]) as running:
        yield running


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def _slow_test_branch(repo: Path, base: str, marker: Path) -> str:
    """A clean change whose test announces its process group, then runs for ten minutes."""
    _git(repo, "checkout", "-q", "-b", "feature/slow-suite", base)
    test = (
        "import os\nimport time\nfrom pathlib import Path\n\n\n"
        "def test_takes_ten_minutes() -> None:\n"
        f"    Path({str(marker)!r}).write_text(str(os.getpgid(0)))\n"
        "    time.sleep(600)\n"
    )
    (repo / "tests" / "test_slow.py").write_text(test)
    (repo / "greeter" / "__init__.py").write_text(GREETER + "\n\nSLOW = True\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "add a slow suite")
    _git(repo, "checkout", "-q", base)
    return "feature/slow-suite"


def _cicd_health(platform: Platform) -> dict[str, object]:
    return httpx.get(f"{platform.agents['cicd'].url}/health", timeout=5).json()  # type: ignore[no-any-return]


def test_a_run_cancelled_during_its_test_step_leaves_no_test_process_and_frees_the_slot(
    platform: Platform, tmp_path: Path
) -> None:
    repo = create_sample_repo(tmp_path / "repo", free_port())
    marker = tmp_path / "pytest-pgid"
    head = _slow_test_branch(repo.path, repo.base, marker)
    with platform.client() as client:
        run = client.create_run("pr_deployment", {"repo": str(repo.path), "head": head, "environment": ENV})
        # The marker is written by the test process itself: no event announces it.
        wait_until(marker.exists, what="the slow test running under the cicd agent", deadline_s=120)
        pgid = int(marker.read_text())
        assert process_group_alive(pgid)

        # The CLI, as a person would: `devtools cancel RUN`.
        env = {**platform.env, "DEVTOOLS_ORCHESTRATOR_URL": platform.orchestrator.url, "COLUMNS": "200"}
        cli = [sys.executable, "-m", "agent_orchestrator", "cancel", run["id"]]
        cancelled = subprocess.run(cli, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert cancelled.returncode == 0, cancelled.stderr
        assert "pr_deployment" in cancelled.stdout

        done = client.follow(run["id"])
        assert done["status"] == "cancelled"
        # Killed, not left to finish its ten minutes; the slot is free again.
        wait_until(lambda: not process_group_alive(pgid), what="the test process group gone")
        wait_until(lambda: _cicd_health(platform)["active_requests"] == 0, what="the cicd slot freed")
        assert [e for e in client.events(run["id"], follow=False) if e.node == "deploy"] == []
    assert platform.releases(ENV) == []
