"""A failed test run in a ticket, through the real services (orchestrator, registry, cicd, and
feature-dev without a model): the cicd agent's analysis is posted as a finding, the fix is handed to
feature-dev, which declines without an LLM, so the ticket's owner is asked; their answer, given from
the CLI, resumes the work: the tests run again with the answer in the task's context."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_orchestrator.demo.sample_repo import add_failing_test_branch, create_sample_repo
from support.tests.agents.processes import REPO_ROOT, free_port
from support.tests.collaboration.polling import until
from support.tests.workflows.flagship_platform import Platform, running_platform

pytestmark = pytest.mark.integration

TEST_PHASES = """\
description: Test the head branch.
from_any_open: [BLOCKED, CANCELLED]
phases:
  - name: TESTING
    description: Run its tests.
    next: [DONE]
    tasks:
      - key: tests
        title: "Test {repo.head_branch}"
        capability: cicd
        request_type: RUN_PIPELINE
        payload: {repo: "{repo.path}", ref: "{repo.head_branch}", require_pass: true}
        max_attempts: 1
  - name: DONE
    status: done
  - name: BLOCKED
    status: blocked
    return_to_previous: true
  - name: CANCELLED
    status: cancelled
"""


@pytest.fixture(scope="module")
def platform(
    module_env: dict[str, str], log_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    phases = tmp_path_factory.mktemp("phases")
    (phases / "tests.yaml").write_text(TEST_PHASES)
    with running_platform(
        module_env, log_dir, ["cicd", "feature-dev"], DEVTOOLS_PHASES_DIR=str(phases)
    ) as running:
        yield running


def test_a_failed_test_run_is_handed_over_and_a_persons_answer_resumes_it(
    platform: Platform, tmp_path: Path
) -> None:
    repo = create_sample_repo(tmp_path / "repo", free_port())
    branch = add_failing_test_branch(repo)
    with platform.client() as client:
        ticket = client.create_ticket("Shout", str(repo.path), head=branch, phase_file="tests")

        def waiting_for_a_person() -> dict[str, Any] | None:
            found = client.list_handoffs(ticket=ticket["id"])
            return found[0] if found and found[0]["status"] == "awaiting_person" else None

        handoff = until(waiting_for_a_person, "the handoff to reach the ticket's owner")
        assert [d["agent"] for d in handoff["declined_by"]] == ["feature-dev"]  # no model: it declines
        assert handoff["person"] == ticket["created_by"]
        thread = client.get_thread(handoff["thread_id"])
        (finding,) = [m for m in thread["messages"] if m["kind"] == "finding"]
        assert finding["author"] == "cicd" and "test_shout" in str(finding["attachments"]) + finding["body"]
        assert thread["messages"][-1]["kind"] == "question"

    env = {
        **os.environ,
        **platform.env,
        "DEVTOOLS_ORCHESTRATOR_URL": platform.orchestrator.url,
        "COLUMNS": "200",
    }
    accept = ["handoffs", "accept", handoff["id"], "--comment", "fixed the case"]
    answered = subprocess.run(
        [sys.executable, "-m", "agent_orchestrator", *accept],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert answered.returncode == 0, answered.stderr
    with platform.client() as client:
        done = client.get_handoff(handoff["id"])
        assert (done["status"], done["accepted_kind"]) == ("accepted", "person")
        rerun = client.get_task(done["follow_up_task_id"])
        assert (rerun["request_type"], rerun["ticket_id"]) == ("RUN_PIPELINE", ticket["id"])
        assert rerun["payload"]["ref"] == branch
        assert rerun["payload"]["_handoff"]["answer"] == "fixed the case"
