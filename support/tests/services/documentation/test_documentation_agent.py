"""The documentation agent as a real process: registers its capabilities, answers over POST /agent-request."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import httpx
import pytest

from support.tests.agents.processes import (
    AGENT_AUTH,
    ServiceProcess,
    agent_request_body,
    registry_record,
)
from support.tests.gitrepo import GitRepo

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("agent_service", ["documentation"], indirect=True),
]


_request = partial(agent_request_body, "documentation")


def test_registers_with_its_capabilities(agent_service: ServiceProcess, registry: ServiceProcess) -> None:
    record = registry_record(registry, "documentation")
    assert record is not None
    assert [c["name"] for c in record["capabilities"]] == ["documentation", "readme_update"]
    assert record["metadata"]["request_types"] == ["GENERATE_DOCS", "UPDATE_README"]


def test_generate_docs_over_http(agent_service: ServiceProcess, tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.commit(
        "initial", {"pkg/__init__.py": "def greet(name: str, *, loud: bool=False) -> str:\n    return name\n"}
    )
    response = httpx.post(
        f"{agent_service.url}/agent-request",
        headers=AGENT_AUTH,
        json=_request("GENERATE_DOCS", {"repo": str(repo.path), "doc_type": "api"}),
        timeout=60,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success", body
    assert "def greet(name: str, *, loud: bool=False) -> str" in body["result"]["markdown"]

    bad_type = httpx.post(
        f"{agent_service.url}/agent-request",
        headers=AGENT_AUTH,
        json=_request("GENERATE_DOCS", {"repo": str(repo.path), "doc_type": "poem"}),
        timeout=60,
    )
    assert bad_type.status_code == 422 and "payload.doc_type" in bad_type.text
