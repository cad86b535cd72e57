"""The code-review agent as a real process: registers its capabilities, answers over POST /agent-request."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest

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
def code_review(
    module_env: dict[str, str], registry: ServiceProcess, log_dir: Path
) -> Iterator[ServiceProcess]:
    with running_agent(
        "code-review", "services.code_review", "DEVTOOLS_CODE_REVIEW_PORT", module_env, registry, log_dir
    ) as service:
        yield service


_request = partial(agent_request_body, "code-review")


def test_registers_with_its_capabilities(code_review: ServiceProcess, registry: ServiceProcess) -> None:
    record = registry_record(registry, "code-review")
    assert record is not None
    assert [c["name"] for c in record["capabilities"]] == ["code_review", "code_explanation"]
    assert record["metadata"]["request_types"] == ["EXPLAIN_CODE", "REVIEW_CODE"]


def test_review_over_http(code_review: ServiceProcess, tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.commit("initial", {"app.py": "x = 1\n"})
    repo.branch("feature")
    repo.commit(
        "leak", {"app.py": "x = 1\nkey = 'AKIA" + "ABCDEFGHIJKLMNOP'\n", "test_app.py": "def test(): ...\n"}
    )
    response = httpx.post(
        f"{code_review.url}/agent-request",
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
        f"{code_review.url}/agent-request",
        headers=AGENT_AUTH,
        json=_request("REVIEW_CODE", {"repo": str(repo.path), "head": "no-such-branch"}),
        timeout=60,
    ).json()
    assert unknown["status"] == "error" and "head: unknown ref 'no-such-branch'" in unknown["error"]

    invalid = httpx.post(
        f"{code_review.url}/agent-request",
        headers=AGENT_AUTH,
        json=_request("REVIEW_CODE", {"repo": str(repo.path)}),
        timeout=60,
    )
    assert invalid.status_code == 422
