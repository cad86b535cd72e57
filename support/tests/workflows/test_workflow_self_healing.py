"""self_healing end to end: the orchestrator service and the real infrastructure agent restore a
killed app, and escalate to a person when no automatic fix works."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent_orchestrator.api.client import OrchestratorClient
from agent_orchestrator.demo.sample_repo import SampleRepo, create_sample_repo
from shared.bus import EventBus, InterAgentEvent
from shared.config import load_settings
from shared.process import process_group_alive
from support.tests.agents.processes import free_port, wait_until
from support.tests.workflows.flagship_platform import Platform, running_platform
from support.tests.workflows.flaky_app import GREETING, commit_flaky_app

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


def _deploy(platform: Platform, tmp_path: Path, env: str, *, flaky: bool = False) -> SampleRepo:
    repo = create_sample_repo(tmp_path / "repo", free_port())
    if flaky:
        commit_flaky_app(repo, repo.base)  # healthy unless config.env sets HEALTHY_CHECKS
    answer = platform.agent_request(
        "infrastructure", "DEPLOY_SERVICE", {"environment": env, "repo": str(repo.path)}
    )
    assert answer["result"]["status"] == "deployed", answer
    return repo


def _kill_app(platform: Platform, env: str) -> None:
    health = platform.agent_request("infrastructure", "HEALTH_CHECK", {"environment": env})["result"]
    os.killpg(health["pid"], signal.SIGKILL)
    # SIGKILL is not instant: the workflow must find the app down, not still answering.
    wait_until(lambda: not process_group_alive(health["pid"]), what="the killed app's process group gone")


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


def _configure(platform: Platform, env: str, values: dict[str, str], restart: bool) -> dict[str, Any]:
    payload = {"environment": env, "values": values, "restart": restart}
    result: dict[str, Any] = platform.agent_request("infrastructure", "UPDATE_CONFIG", payload)["result"]
    assert result["status"] == "applied", result
    return result


def test_a_config_change_that_broke_the_app_is_reverted(
    platform: Platform, client: OrchestratorClient, tmp_path: Path
) -> None:
    repo = _deploy(platform, tmp_path, "reconfigured", flaky=True)
    _configure(platform, "reconfigured", {"GREETING_NAME": "world"}, restart=False)
    # The bad change: the restarted app passes its start check, then its health goes bad.
    applied = _configure(platform, "reconfigured", {"HEALTHY_CHECKS": "1"}, restart=True)
    assert applied["restarted"] is True and applied["health"]["status"] == "degraded"

    run = client.follow(client.create_run("self_healing", {"environment": "reconfigured"})["id"])

    assert run["status"] == "succeeded", run["error"]
    final = run["result"]["final_result"]
    assert (final["outcome"], final["attempts"]) == ("healed", 1)
    attempt = run["result"]["attempts"][0]
    assert attempt["fix"] == "config_revert" and "config changed" in attempt["diagnosis"]
    config = (platform.data_dir / "environments" / "reconfigured" / "config.env").read_text()
    assert "HEALTHY_CHECKS" not in config and "GREETING_NAME" in config
    health = platform.agent_request("infrastructure", "HEALTH_CHECK", {"environment": "reconfigured"})
    assert health["result"]["healthy"] is True
    assert httpx.get(repo.url + "/", timeout=5).text == GREETING


async def test_approving_an_escalation_checks_again_and_heals(
    platform: Platform, client: OrchestratorClient, tmp_path: Path, marker: Path
) -> None:
    settings = load_settings(
        redis_url=platform.env["DEVTOOLS_REDIS_URL"], redis_prefix=platform.env["DEVTOOLS_REDIS_PREFIX"]
    )
    received: asyncio.Queue[InterAgentEvent] = asyncio.Queue()
    async with EventBus.from_settings(settings, agent_id="escalation-watcher") as bus:
        await bus.subscribe("approval_required", received.put, group=f"watcher-{uuid.uuid4().hex[:8]}")
        repo = await asyncio.to_thread(_deploy, platform, tmp_path, "rescued")
        await asyncio.to_thread(marker.write_text, "no restarts until a person fixes it")
        try:
            await asyncio.to_thread(_kill_app, platform, "rescued")
            data = {"environment": "rescued", "max_attempts": 1}
            created = await asyncio.to_thread(client.create_run, "self_healing", data)
            run = await asyncio.to_thread(client.follow, created["id"])
            assert run["status"] == "interrupted"
            event = await asyncio.wait_for(received.get(), 30)
        finally:
            await asyncio.to_thread(marker.unlink)
    assert event.correlation_id == run["id"] and event.source_agent == "orchestrator"
    assert event.payload["kind"] == "self_healing_exhausted"
    assert [a["fix"] for a in event.payload["attempts"]] == ["restart"]

    # The person fixes it by hand, then approves: the workflow checks again and reports healed.
    restarted = platform.agent_request("infrastructure", "RESTART", {"environment": "rescued"})
    assert restarted["result"]["healthy"] is True
    await asyncio.to_thread(client.decide, run["id"], True, "restarted it by hand")
    done = await asyncio.to_thread(client.follow, run["id"])

    assert done["status"] == "succeeded", done["error"]
    final = done["result"]["final_result"]
    assert (final["outcome"], final["ok"]) == ("healed", True)
    assert "after escalation to operator" in final["reason"]
    assert done["result"]["escalation"]["approved"] is True
    assert done["result"]["subtask_status"]["final_check"] == "up"
    async with httpx.AsyncClient(timeout=5) as http:
        assert (await http.get(repo.url + "/")).text == "Hello, world!"
    # Announced once, although the escalate node ran again when the run resumed.
    assert [e.event_type.value for e in platform.bus_events(run["id"])].count("approval_required") == 1
