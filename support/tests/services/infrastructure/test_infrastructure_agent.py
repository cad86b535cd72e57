"""The infrastructure agent as a real process: a real deploy, health check and stop over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.infrastructure.env_state import EnvironmentDir
from shared.locks import ResourceLockManager
from support.tests.agents.processes import (
    AGENT_AUTH,
    ServiceProcess,
    agent_request_body,
    free_port,
    registry_record,
)
from support.tests.gitrepo import GitRepo
from support.tests.services.infrastructure.test_infrastructure_deploy import APP, pyproject

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("agent_service", ["infrastructure"], indirect=True),
]


def _post(service: ServiceProcess, request_type: str, payload: dict[str, Any]) -> httpx.Response:
    body = {
        "source_agent": "tests",
        "target_agent": "infrastructure",
        "request_type": request_type,
        "payload": payload,
    }
    return httpx.post(f"{service.url}/agent-request", headers=AGENT_AUTH, json=body, timeout=60)


def test_registers_with_its_capability(agent_service: ServiceProcess, registry: ServiceProcess) -> None:
    record = registry_record(registry, "infrastructure")
    assert record is not None
    assert [c["name"] for c in record["capabilities"]] == ["infrastructure"]
    assert record["metadata"]["request_types"] == [
        "DEPLOY_SERVICE", "HEALTH_CHECK", "RESTART", "ROLLBACK", "STOP", "UPDATE_CONFIG",
    ]  # fmt: skip


def test_deploy_check_and_stop_over_http(agent_service: ServiceProcess, tmp_path: Path) -> None:
    app_port = free_port()
    repo = GitRepo(tmp_path / "app")
    repo.commit(
        "v1", {"app.py": APP.format(version="v1", health_status=200), "pyproject.toml": pyproject(app_port)}
    )

    deployed = _post(agent_service, "DEPLOY_SERVICE", {"environment": "qa", "repo": str(repo.path)}).json()

    assert deployed["status"] == "success", deployed
    assert deployed["result"]["status"] == "deployed"
    assert httpx.get(f"http://127.0.0.1:{app_port}/", timeout=5).text == "v1 greeting="
    health = _post(agent_service, "HEALTH_CHECK", {"environment": "qa"}).json()["result"]
    assert (health["status"], health["http_status"], health["release_id"]) == (
        "up", 200, deployed["result"]["release_id"],
    )  # fmt: skip

    stopped = _post(agent_service, "STOP", {"environment": "qa"}).json()["result"]
    assert stopped["stopped"] is True
    assert _post(agent_service, "HEALTH_CHECK", {"environment": "qa"}).json()["result"]["status"] == "down"

    invalid = _post(agent_service, "UPDATE_CONFIG", {"environment": "qa", "values": {"lower": "x"}})
    assert invalid.status_code == 422 and "payload.values" in invalid.text
    missing = _post(agent_service, "HEALTH_CHECK", {"environment": "nowhere"}).json()
    assert missing["status"] == "error" and "'nowhere' has never been deployed to" in missing["error"]


# -- fencing against the SQL lock table (env:<environment>) ------------------------------------------


@pytest.fixture
async def locks(module_env: dict[str, str]) -> AsyncIterator[ResourceLockManager]:
    manager = await ResourceLockManager.connect(module_env["DEVTOOLS_DATABASE_URL"], name="tests-locks")
    yield manager
    await manager.close()


async def _apost(service: ServiceProcess, request_type: str, **payload: Any) -> dict[str, Any]:
    body = agent_request_body("infrastructure", request_type, payload)
    async with httpx.AsyncClient(timeout=60) as client:
        response = await client.post(f"{service.url}/agent-request", headers=AGENT_AUTH, json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def _app_text(app_port: int) -> str:
    async with httpx.AsyncClient(timeout=5) as client:
        return (await client.get(f"http://127.0.0.1:{app_port}/")).text


def _app_repo(tmp_path: Path, name: str) -> tuple[GitRepo, int]:
    app_port = free_port()
    repo = GitRepo(tmp_path / name)
    repo.commit(
        "v1", {"app.py": APP.format(version="v1", health_status=200), "pyproject.toml": pyproject(app_port)}
    )
    return repo, app_port


def _highest_token(module_env: dict[str, str], environment: str) -> int | None:
    return EnvironmentDir(Path(module_env["DEVTOOLS_DATA_DIR"]), environment).load().highest_fencing_token


async def test_a_request_without_a_token_runs_under_a_lock_the_agent_takes(
    agent_service: ServiceProcess, locks: ResourceLockManager, module_env: dict[str, str], tmp_path: Path
) -> None:
    repo, app_port = _app_repo(tmp_path, "free")

    answer = await _apost(agent_service, "DEPLOY_SERVICE", environment="free-env", repo=str(repo.path))

    assert answer["status"] == "success" and answer["result"]["status"] == "deployed", answer
    status = await locks.status("env:free-env")
    assert not status.locked  # released after the deploy
    assert status.last_token is not None and _highest_token(module_env, "free-env") == status.last_token
    assert await _app_text(app_port) == "v1 greeting="


async def test_the_lock_holders_token_is_required_while_the_environment_is_locked(
    agent_service: ServiceProcess, locks: ResourceLockManager, module_env: dict[str, str], tmp_path: Path
) -> None:
    repo, app_port = _app_repo(tmp_path, "held")
    env = "held-env"
    deploy = {"environment": env, "repo": str(repo.path)}
    async with locks.acquire(f"env:{env}", owner="tests-holder", ttl=60, wait_timeout=5) as lease:
        token = lease.fencing_token
        unfenced = await _apost(agent_service, "DEPLOY_SERVICE", **deploy)
        bogus = await _apost(agent_service, "DEPLOY_SERVICE", **deploy, fencing_token=token + 5)
        assert _highest_token(module_env, env) is None  # refused before anything was recorded
        fenced = await _apost(agent_service, "DEPLOY_SERVICE", **deploy, fencing_token=token)
        config = {"environment": env, "values": {"GREETING": "x"}}
        bogus_config = await _apost(agent_service, "UPDATE_CONFIG", **config, fencing_token=token + 1)
    after_release = await _apost(agent_service, "STOP", environment=env, fencing_token=token)

    assert unfenced["status"] == "error"
    assert unfenced["error"].startswith(f"EnvironmentLockedError: environment '{env}' is locked")
    assert "held by tests-holder" in unfenced["error"]
    assert bogus["status"] == "error" and bogus["error"].startswith("FencingTokenNotHeldError")
    assert f"is held by tests-holder with token {token}" in bogus["error"]
    assert fenced["status"] == "success" and fenced["result"]["status"] == "deployed", fenced
    assert _highest_token(module_env, env) == token
    assert bogus_config["status"] == "error" and "is not the current holder's" in bogus_config["error"]
    assert not EnvironmentDir(Path(module_env["DEVTOOLS_DATA_DIR"]), env).config_file.exists()
    assert after_release["status"] == "error"
    assert f"is not held: nobody holds env:{env} now" in after_release["error"]
    assert await _app_text(app_port) == "v1 greeting="  # the refused STOP left the app serving
