"""self_healing end to end: the orchestrator service and the real infrastructure agent restore a
killed app, and escalate to a person when no automatic fix works."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent_orchestrator.runs_client import OrchestratorClient
from agent_orchestrator.sample_repo import SampleRepo, create_sample_repo
from support.tests.agents.processes import free_port
from support.tests.integration.flagship_platform import Platform, running_platform

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def marker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("marker") / "broken"


@pytest.fixture(scope="module")
def platform(module_env: dict[str, str], log_dir: Path, marker: Path) -> Iterator[Platform]:
    # Apps inherit the infrastructure agent's environment: the marker makes them refuse to start.
    with running_platform(module_env, log_dir, ["infrastructure"], APP_FAIL_IF_EXISTS=str(marker)) as running:
        yield running


@pytest.fixture
def client(platform: Platform) -> Iterator[OrchestratorClient]:
    with platform.client() as c:
        yield c


def _deploy(platform: Platform, tmp_path: Path, env: str) -> SampleRepo:
    repo = create_sample_repo(tmp_path / "repo", free_port())
    answer = platform.agent_request(
        "infrastructure", "DEPLOY_SERVICE", {"environment": env, "repo": str(repo.path)}
    )
    assert answer["result"]["status"] == "deployed", answer
    return repo


def _kill_app(platform: Platform, env: str) -> None:
    health = platform.agent_request("infrastructure", "HEALTH_CHECK", {"environment": env})["result"]
    os.killpg(health["pid"], signal.SIGKILL)


def test_a_killed_app_is_restarted_and_serves_again(
    platform: Platform, client: OrchestratorClient, tmp_path: Path
) -> None:
    repo = _deploy(platform, tmp_path, "heal")
    _kill_app(platform, "heal")
    with pytest.raises(httpx.TransportError):
        httpx.get(repo.url + "/", timeout=5)

    run = client.follow(client.create_run("self_healing", {"environment": "heal"})["id"])

    assert run["status"] == "succeeded", run["error"]
    assert httpx.get(repo.url + "/", timeout=5).text == "Hello, world!"
    final = run["result"]["final_result"]
    assert (final["outcome"], final["attempts"]) == ("healed", 1)
    assert run["result"]["attempts"][0]["fix"] == "restart"
    assert "| 1 | the process is gone" in final["report"]


def test_a_healthy_environment_needs_nothing(
    platform: Platform, client: OrchestratorClient, tmp_path: Path
) -> None:
    _deploy(platform, tmp_path, "fine")
    run = client.follow(client.create_run("self_healing", {"environment": "fine"})["id"])
    assert run["status"] == "succeeded"
    assert run["result"]["final_result"]["outcome"] == "healthy" and run["result"].get("attempts", []) == []


def test_after_max_attempts_it_escalates_and_waits_for_a_person(
    platform: Platform, client: OrchestratorClient, tmp_path: Path, marker: Path
) -> None:
    _deploy(platform, tmp_path, "doomed")
    marker.write_text("no restarts from now on")
    _kill_app(platform, "doomed")

    run = client.follow(client.create_run("self_healing", {"environment": "doomed", "max_attempts": 2})["id"])

    assert run["status"] == "interrupted"
    request = run["interrupt"][0]["value"]
    assert request["kind"] == "self_healing_exhausted"
    assert [a["fix"] for a in request["attempts"]] == ["restart", "rollback"]
    assert [a["run_id"] for a in client.approvals()].count(run["id"]) == 1

    marker.unlink()  # later apps of this module may start again
    client.decide(run["id"], False, comment="giving up")
    done = client.follow(run["id"])
    assert done["status"] == "failed" and "rejected by operator" in done["error"]
    final = client.final_result(done)
    assert final is not None and "## Escalation" in final["report"] and "giving up" in final["report"]
