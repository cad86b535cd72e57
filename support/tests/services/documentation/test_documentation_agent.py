"""The documentation agent as a real process: registers its capabilities, answers over POST /agent-request."""

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
def documentation(
    module_env: dict[str, str], registry: ServiceProcess, log_dir: Path
) -> Iterator[ServiceProcess]:
    with running_agent(
        "documentation",
        "services.documentation",
        "DEVTOOLS_DOCUMENTATION_PORT",
        module_env,
        registry,
        log_dir,
    ) as service:
        yield service


_request = partial(agent_request_body, "documentation")


def test_registers_with_its_capabilities(documentation: ServiceProcess, registry: ServiceProcess) -> None:
    record = registry_record(registry, "documentation")
    assert record is not None
    assert [c["name"] for c in record["capabilities"]] == ["documentation", "readme_update"]
    assert record["metadata"]["request_types"] == ["GENERATE_DOCS", "UPDATE_README"]


def test_generate_docs_over_http(documentation: ServiceProcess, tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.commit(
        "initial", {"pkg/__init__.py": "def greet(name: str, *, loud: bool=False) -> str:\n    return name\n"}
    )
    response = httpx.post(
        f"{documentation.url}/agent-request",
        headers=AGENT_AUTH,
        json=_request("GENERATE_DOCS", {"repo": str(repo.path), "doc_type": "api"}),
        timeout=60,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success", body
    assert "def greet(name: str, *, loud: bool=False) -> str" in body["result"]["markdown"]

    bad_type = httpx.post(
        f"{documentation.url}/agent-request",
        headers=AGENT_AUTH,
        json=_request("GENERATE_DOCS", {"repo": str(repo.path), "doc_type": "poem"}),
        timeout=60,
    )
    assert bad_type.status_code == 422 and "payload.doc_type" in bad_type.text
