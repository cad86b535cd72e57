"""The infrastructure agent as a real process: a real deploy, health check and stop over HTTP."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.infrastructure.env_state import EnvironmentDir
from support.tests.agents.processes import (
    ServiceProcess,
    free_port,
    registry_record,
    running_agent,
)
from support.tests.gitrepo import GitRepo
from support.tests.integration.test_infrastructure_deploy import APP, pyproject

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def infrastructure(
    module_env: dict[str, str], registry: ServiceProcess, log_dir: Path
) -> Iterator[ServiceProcess]:
    env_var = "DEVTOOLS_INFRASTRUCTURE_PORT"
    try:
        with running_agent(
            "infrastructure", "services.infrastructure", env_var, module_env, registry, log_dir
        ) as svc:
            yield svc
    finally:
        # The apps it deployed run in sessions of their own: stop them whatever the test did.
        data_dir = Path(module_env["DEVTOOLS_DATA_DIR"])
        for state_file in (data_dir / "environments").glob("*/state.json"):
            process = EnvironmentDir(data_dir, state_file.parent.name).load().process
            if process is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)


def _post(service: ServiceProcess, request_type: str, payload: dict[str, Any]) -> httpx.Response:
    body = {
        "source_agent": "tests",
        "target_agent": "infrastructure",
        "request_type": request_type,
        "payload": payload,
    }
    return httpx.post(f"{service.url}/agent-request", json=body, timeout=60)


def test_registers_with_its_capability(infrastructure: ServiceProcess, registry: ServiceProcess) -> None:
    record = registry_record(registry, "infrastructure")
    assert record is not None
    assert [c["name"] for c in record["capabilities"]] == ["infrastructure"]
    assert record["metadata"]["request_types"] == [
        "DEPLOY_SERVICE", "HEALTH_CHECK", "RESTART", "ROLLBACK", "STOP", "UPDATE_CONFIG",
    ]  # fmt: skip


def test_deploy_check_and_stop_over_http(infrastructure: ServiceProcess, tmp_path: Path) -> None:
    app_port = free_port()
    repo = GitRepo(tmp_path / "app")
    repo.commit(
        "v1", {"app.py": APP.format(version="v1", health_status=200), "pyproject.toml": pyproject(app_port)}
    )

    deployed = _post(infrastructure, "DEPLOY_SERVICE", {"environment": "qa", "repo": str(repo.path)}).json()

    assert deployed["status"] == "success", deployed
    assert deployed["result"]["status"] == "deployed"
    assert httpx.get(f"http://127.0.0.1:{app_port}/", timeout=5).text == "v1 greeting="
    health = _post(infrastructure, "HEALTH_CHECK", {"environment": "qa"}).json()["result"]
    assert (health["status"], health["http_status"], health["release_id"]) == (
        "up", 200, deployed["result"]["release_id"],
    )  # fmt: skip

    stopped = _post(infrastructure, "STOP", {"environment": "qa"}).json()["result"]
    assert stopped["stopped"] is True
    assert _post(infrastructure, "HEALTH_CHECK", {"environment": "qa"}).json()["result"]["status"] == "down"

    invalid = _post(infrastructure, "UPDATE_CONFIG", {"environment": "qa", "values": {"lower": "x"}})
    assert invalid.status_code == 422 and "payload.values" in invalid.text
    missing = _post(infrastructure, "HEALTH_CHECK", {"environment": "nowhere"}).json()
    assert missing["status"] == "error" and "'nowhere' has never been deployed to" in missing["error"]
