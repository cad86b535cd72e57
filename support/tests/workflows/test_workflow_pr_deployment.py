"""pr_deployment end to end through the real services: registry, code-review, cicd and
infrastructure agents and the orchestrator service, as processes, over the bus and HTTP."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent_orchestrator.api.client import OrchestratorClient, OrchestratorError
from agent_orchestrator.demo.sample_repo import (
    SampleRepo,
    add_failing_test_branch,
    add_secret_branch,
)
from support.tests.workflows.flagship_platform import Platform, running_platform
from support.tests.workflows.flaky_app import GREETING, commit_flaky_app

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def platform(module_env: dict[str, str], log_dir: Path) -> Iterator[Platform]:
    with running_platform(module_env, log_dir, ["code-review", "cicd", "infrastructure"]) as running:
        yield running


@pytest.fixture
def client(platform: Platform) -> Iterator[OrchestratorClient]:
    with platform.client() as c:
        yield c


def _run(client: OrchestratorClient, repo: SampleRepo, head: str, env: str) -> dict[str, Any]:
    created = client.create_run("pr_deployment", {"repo": str(repo.path), "head": head, "environment": env})
    return client.follow(created["id"])


def test_clean_pr_is_reviewed_tested_auto_approved_deployed_and_serves(
    platform: Platform, client: OrchestratorClient, sample: Callable[[], SampleRepo]
) -> None:
    repo = sample()

    run = _run(client, repo, repo.feature, "staging")

    assert run["status"] == "succeeded", run["error"]
    final = run["result"]["final_result"]
    assert final["outcome"] == "deployed" and final["ok"] is True
    assert httpx.get(repo.url + "/", timeout=5).text == "Hello, world!"
    state = run["result"]
    assert state["review"]["verdict"] == "approve"
    assert (state["tests"]["status"], state["tests"]["passed"]) == ("passed", 2)
    assert state["approval"]["automatic"] is True and state["approval"]["approver"] == "policy"
    assert state["deploy"]["fencing_token"] == state["locks"]["env:staging"]["fencing_token"]
    assert set(state["locks"]) == {f"repo:{repo.path.name}", "env:staging"}
    assert platform.releases("staging") == [final["release_id"]]
    report = final["report"]
    for heading in ("## Code review", "## Tests", "## Approval", "## Deploy"):
        assert heading in report
    events = platform.bus_events(run["id"])
    kinds = [e.event_type.value for e in events]
    assert kinds.count("resource.locked") == 2 and kinds.count("resource.unlocked") == 2
    # Verified while the environment was still locked: the health check came before the unlock.
    assert state["deploy"]["verification"]["healthy"] is True
    assert state["verify"]["health"]["release_id"] == final["release_id"]
    unlocked = next(e for e in events if e.event_type.value == "resource.unlocked")
    checked_at = datetime.fromisoformat(state["verify"]["health"]["checked_at"])
    assert checked_at <= unlocked.created_at
    # The same commit again is already live and healthy: answered without a second release.
    again = _run(client, repo, repo.feature, "staging")
    assert again["status"] == "succeeded", again["error"]
    assert again["result"]["deploy"]["unchanged"] is True
    assert platform.releases("staging") == [final["release_id"]]


def test_pr_with_a_secret_is_stopped_at_review_and_nothing_is_deployed(
    platform: Platform, client: OrchestratorClient, sample: Callable[[], SampleRepo]
) -> None:
    repo = sample()
    branch = add_secret_branch(repo)

    run = _run(client, repo, branch, "secret-env")

    assert run["status"] == "failed"
    assert "code review requested changes" in run["error"] and "aws-access-key-id" in run["error"]
    final = client.final_result(run)
    assert final is not None and final["outcome"] == "changes_requested"
    assert "aws-access-key-id" in final["report"] and "Nothing was deployed" in final["report"]
    assert platform.releases("secret-env") == []
    assert not (platform.data_dir / "environments" / "secret-env").exists()


def test_pr_whose_tests_fail_is_not_deployed(
    platform: Platform, client: OrchestratorClient, sample: Callable[[], SampleRepo]
) -> None:
    repo = sample()
    branch = add_failing_test_branch(repo)

    run = _run(client, repo, branch, "failing-env")

    assert run["status"] == "failed" and "tests failed: 1 failed" in run["error"]
    final = client.final_result(run)
    assert final is not None and "test_shout" in final["report"]
    assert platform.releases("failing-env") == []


def test_production_waits_for_a_person_and_approve_deploys(
    platform: Platform, client: OrchestratorClient, sample: Callable[[], SampleRepo]
) -> None:
    repo = sample()

    run = _run(client, repo, repo.feature, "production")

    assert run["status"] == "interrupted"
    waiting = [a for a in client.approvals() if a["run_id"] == run["id"]]
    assert len(waiting) == 1
    request = waiting[0]["interrupt"][0]["value"]
    assert request["kind"] == "deploy_approval"
    assert request["reasons"] == ["environment 'production' is protected"]
    assert platform.releases("production") == []

    client.decide(run["id"], True, comment="ship it")
    done = client.follow(run["id"])

    assert done["status"] == "succeeded", done["error"]
    approval = done["result"]["approval"]
    assert (approval["approved"], approval["approver"], approval["comment"]) == (True, "operator", "ship it")
    assert len(platform.releases("production")) == 1
    assert httpx.get(repo.url + "/", timeout=5).status_code == 200
    assert "**approved** by `operator`" in done["result"]["final_result"]["report"]
    kinds = [e.event_type.value for e in platform.bus_events(run["id"])]
    assert kinds.count("approval_required") == 1 and kinds.count("approved") == 1
    with pytest.raises(OrchestratorError) as second:
        client.decide(run["id"], True)
    assert second.value.status_code == 409


def test_production_rejected_ends_the_run_without_deploying(
    platform: Platform, client: OrchestratorClient, sample: Callable[[], SampleRepo]
) -> None:
    repo = sample()
    run = _run(client, repo, repo.feature, "prod")
    assert run["status"] == "interrupted"

    client.decide(run["id"], False, comment="not on a Friday")
    done = client.follow(run["id"])

    assert done["status"] == "failed"
    assert "deploy rejected by operator (not on a Friday)" in done["error"]
    assert platform.releases("prod") == []
    kinds = [e.event_type.value for e in platform.bus_events(run["id"])]
    assert "rejected" in kinds and "approved" not in kinds


def test_a_release_that_goes_unhealthy_before_verify_is_rolled_back(
    platform: Platform, client: OrchestratorClient, sample: Callable[[], SampleRepo]
) -> None:
    repo = sample()
    env = "verify-env"
    first = platform.agent_request(
        "infrastructure", "DEPLOY_SERVICE", {"environment": env, "repo": str(repo.path)}
    )["result"]
    assert first["status"] == "deployed"
    # Passes the deploy's health check, answers 503 from the next check on.
    branch = commit_flaky_app(repo, "feature/question", healthy_checks="1")

    run = _run(client, repo, branch, env)

    assert run["status"] == "failed"
    assert "verification failed" in run["error"] and "rollback rolled_back" in run["error"]
    final = client.final_result(run)
    assert final is not None and (final["outcome"], final["ok"]) == ("verify_failed", False)
    assert "- rollback: rolled_back" in final["report"] and "HTTP 503" in final["report"]
    # The new release was deployed (its health check passed), then replaced by the previous one.
    assert final["release_id"] != first["release_id"]
    assert platform.releases(env) == sorted([first["release_id"], final["release_id"]])
    health = platform.agent_request("infrastructure", "HEALTH_CHECK", {"environment": env})["result"]
    assert (health["healthy"], health["release_id"]) == (True, first["release_id"])
    served = httpx.get(repo.url + "/", timeout=5).text
    assert served == "Hello, world!" and served != GREETING


def test_a_diff_over_the_auto_approve_size_waits_for_a_person(
    platform: Platform, client: OrchestratorClient, sample: Callable[[], SampleRepo]
) -> None:
    repo = sample()
    data = {"repo": str(repo.path), "head": repo.feature, "environment": "sized", "max_auto_approve_lines": 1}

    run = client.follow(client.create_run("pr_deployment", data)["id"])

    assert run["status"] == "interrupted"  # staging and a clean review, but the diff is too big
    request = run["interrupt"][0]["value"]
    assert len(request["reasons"]) == 1
    assert re.fullmatch(r"diff of \d+ changed lines is over 1", request["reasons"][0])
    assert platform.releases("sized") == []
    client.decide(run["id"], False, comment="split it up")
    done = client.follow(run["id"])
    assert done["status"] == "failed" and "deploy rejected by operator (split it up)" in done["error"]
    assert platform.releases("sized") == []


def _refused(client: OrchestratorClient, data: dict[str, Any]) -> str:
    with pytest.raises(OrchestratorError) as bad:
        client.create_run("pr_deployment", data)
    assert bad.value.status_code == 422
    return str(bad.value)


def test_bad_input_is_a_422_naming_the_field(
    client: OrchestratorClient, sample: Callable[[], SampleRepo], tmp_path: Path
) -> None:
    repo = sample()
    assert "input.environment" in _refused(
        client, {"repo": str(repo.path), "head": repo.feature, "environment": "Not Valid"}
    )
    missing = _refused(client, {"repo": str(tmp_path / "nowhere"), "head": "b"})
    assert "input.repo" in missing and "no such folder" in missing
    (tmp_path / "plain").mkdir()
    plain = _refused(client, {"repo": str(tmp_path / "plain"), "head": "b"})
    assert "input.repo" in plain and "not a git repository" in plain
    unknown = _refused(client, {"repo": str(repo.path), "head": "feature/nope"})
    assert "input.head" in unknown and "input.repo" not in unknown
    assert "input.base" in _refused(client, {"repo": str(repo.path), "head": repo.feature, "base": "trunk"})
