"""The feature-dev agent as a real process: registers, and with no LLM rejects work instead of faking it."""

from __future__ import annotations

from collections.abc import Iterator
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
    running_agent,
)
from support.tests.gitrepo import GitRepo

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def feature_dev(
    module_env: dict[str, str], registry: ServiceProcess, log_dir: Path
) -> Iterator[ServiceProcess]:
    with running_agent(
        "feature-dev", "services.feature_dev", "DEVTOOLS_FEATURE_DEV_PORT", module_env, registry, log_dir
    ) as service:
        yield service


_request = partial(agent_request_body, "feature-dev")


def test_registers_with_its_capability(feature_dev: ServiceProcess, registry: ServiceProcess) -> None:
    record = registry_record(registry, "feature-dev")
    assert record is not None
    assert [c["name"] for c in record["capabilities"]] == ["feature_dev"]
    assert record["metadata"]["request_types"] == ["GENERATE_CODE", "REFACTOR_CODE"]


def test_without_an_llm_requests_are_rejected_and_nothing_changes(
    feature_dev: ServiceProcess, tmp_path: Path
) -> None:
    repo = GitRepo(tmp_path / "repo")
    head = repo.commit("initial", {"app.py": "x = 1\n"})
    for request_type in ("GENERATE_CODE", "REFACTOR_CODE"):
        response = httpx.post(
            f"{feature_dev.url}/agent-request",
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


def test_bad_payload_names_the_field(feature_dev: ServiceProcess) -> None:
    response = httpx.post(
        f"{feature_dev.url}/agent-request",
        headers=AGENT_AUTH,
        json=_request("GENERATE_CODE", {"repo": "/tmp"}),
        timeout=30,
    )
    assert response.status_code == 422
    assert "payload.instruction" in response.text
