"""The feature-dev agent as a real process: registers, and with no LLM rejects work instead of faking it."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import httpx
import pytest

from shared.git import run_git
from support.tests.agents.processes import (
    AGENT_AUTH,
    ServiceProcess,
    agent_request_body,
    registry_record,
)
from support.tests.gitrepo import GitRepo

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("agent_service", ["feature-dev"], indirect=True),
]


_request = partial(agent_request_body, "feature-dev")


def test_registers_with_its_capability(agent_service: ServiceProcess, registry: ServiceProcess) -> None:
    record = registry_record(registry, "feature-dev")
    assert record is not None
    assert [c["name"] for c in record["capabilities"]] == ["feature_dev"]
    assert record["metadata"]["request_types"] == ["GENERATE_CODE", "REFACTOR_CODE"]


def test_without_an_llm_requests_are_rejected_and_nothing_changes(
    agent_service: ServiceProcess, tmp_path: Path
) -> None:
    repo = GitRepo(tmp_path / "repo")
    head = repo.commit("initial", {"app.py": "x = 1\n"})
    for request_type in ("GENERATE_CODE", "REFACTOR_CODE"):
        response = httpx.post(
            f"{agent_service.url}/agent-request",
            headers=AGENT_AUTH,
            json=_request(request_type, {"repo": str(repo.path), "instruction": "Add a health endpoint"}),
            timeout=30,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "rejected" and body["error"].startswith("no LLM configured"), body
        assert body["result"] is None
    assert repo.head() == head and run_git(repo.path, "branch", "--format=%(refname:short)").split() == [
        "main"
    ]


def test_bad_payload_names_the_field(agent_service: ServiceProcess) -> None:
    response = httpx.post(
        f"{agent_service.url}/agent-request",
        headers=AGENT_AUTH,
        json=_request("GENERATE_CODE", {"repo": "/tmp"}),
        timeout=30,
    )
    assert response.status_code == 422
    assert "payload.instruction" in response.text
