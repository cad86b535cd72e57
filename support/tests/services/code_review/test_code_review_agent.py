"""The code-review agent as a real process: registers its capabilities, answers over POST /agent-request."""

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
    pytest.mark.parametrize("agent_service", ["code-review"], indirect=True),
]


_request = partial(agent_request_body, "code-review")


def test_registers_with_its_capabilities(agent_service: ServiceProcess, registry: ServiceProcess) -> None:
    record = registry_record(registry, "code-review")
    assert record is not None
    assert [c["name"] for c in record["capabilities"]] == ["code_review", "code_explanation"]
    assert record["metadata"]["request_types"] == ["EXPLAIN_CODE", "REVIEW_CODE"]


def test_review_over_http(agent_service: ServiceProcess, tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.commit("initial", {"app.py": "x = 1\n"})
    repo.branch("feature")
    repo.commit(
        "leak", {"app.py": "x = 1\nkey = 'AKIA" + "ABCDEFGHIJKLMNOP'\n", "test_app.py": "def test(): ...\n"}
    )
    response = httpx.post(
        f"{agent_service.url}/agent-request",
        headers=AGENT_AUTH,
        json=_request("REVIEW_CODE", {"repo": str(repo.path), "base": "main", "head": "feature"}),
        timeout=60,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success", body
    assert body["result"]["verdict"] == "request_changes"
    assert [(f["file"], f["line"], f["rule"]) for f in body["result"]["findings"]] == [
        ("app.py", 2, "aws-access-key-id")
    ]

    unknown = httpx.post(
        f"{agent_service.url}/agent-request",
        headers=AGENT_AUTH,
        json=_request("REVIEW_CODE", {"repo": str(repo.path), "head": "no-such-branch"}),
        timeout=60,
    ).json()
    assert unknown["status"] == "error" and "head: unknown ref 'no-such-branch'" in unknown["error"]

    invalid = httpx.post(
        f"{agent_service.url}/agent-request",
        headers=AGENT_AUTH,
        json=_request("REVIEW_CODE", {"repo": str(repo.path)}),
        timeout=60,
    )
    assert invalid.status_code == 422
