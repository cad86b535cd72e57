"""The cicd agent as a real process: registers its capability, answers over POST /agent-request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from support.tests.agents.processes import (
    AGENT_AUTH,
    ServiceProcess,
    registry_record,
)
from support.tests.gitrepo import GitRepo

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("agent_service", ["cicd"], indirect=True),
]


def _post(service: ServiceProcess, request_type: str, payload: dict[str, Any]) -> httpx.Response:
    body = {"source_agent": "tests", "target_agent": "cicd", "request_type": request_type, "payload": payload}
    return httpx.post(f"{service.url}/agent-request", headers=AGENT_AUTH, json=body, timeout=60)


def test_registers_with_its_capability(agent_service: ServiceProcess, registry: ServiceProcess) -> None:
    record = registry_record(registry, "cicd")
    assert record is not None
    assert [c["name"] for c in record["capabilities"]] == ["cicd"]
    assert record["metadata"]["request_types"] == ["DEPLOY_ARTIFACT", "RUN_PIPELINE", "VALIDATE_BUILD"]


def test_run_pipeline_over_http(
    agent_service: ServiceProcess, tmp_path: Path, module_env: dict[str, str]
) -> None:
    repo = GitRepo(tmp_path / "repo")
    command = "echo '=== 1 failed, 2 passed in 0.01s ==='; exit 1"
    repo.commit("configured", {"devtools.toml": f'test_command = "{command}"\n'})

    response = _post(agent_service, "RUN_PIPELINE", {"repo": str(repo.path), "ref": "main"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success", body
    result = body["result"]
    assert (result["status"], result["exit_code"], result["passed"], result["failed"]) == ("failed", 1, 2, 1)
    assert result["commit"] == repo.head()
    assert Path(result["log_path"]).is_relative_to(Path(module_env["DEVTOOLS_DATA_DIR"]))

    unknown = _post(agent_service, "RUN_PIPELINE", {"repo": str(repo.path), "ref": "no-such-branch"}).json()
    assert unknown["status"] == "error" and "unknown ref 'no-such-branch'" in unknown["error"]
    invalid = _post(agent_service, "RUN_PIPELINE", {"repo": str(repo.path), "timeout_seconds": -1})
    assert invalid.status_code == 422 and "payload.timeout_seconds" in invalid.text
