"""The gate endpoints over real HTTP: reads, the refusals of an evaluation, auth. (Gates evaluated by the
ticket workflow on the real agents: support/tests/workflows/test_workflow_ticket.py.)"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

import agent_orchestrator.workflows.catalog  # noqa: F401  (registers the ticket workflow)
from support.tests.api.serving import serving
from support.tests.gitrepo import GitRepo

pytestmark = pytest.mark.integration

ALICE = {"Authorization": "Bearer tok-alice"}


@pytest.fixture
async def client(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    options = {"workers": 1, "dispatchers": 0}
    async with serving(database_url, redis_url, redis_prefix, tmp_path, **options) as (http, _app):
        yield http


async def test_gates_artifacts_and_evaluation_refusals(client: httpx.AsyncClient, tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.commit("first", {"app.py": "print('hi')\n"})
    created = await client.post(
        "/api/v1/tickets", json={"title": "Gate me", "repo": {"path": str(repo.path)}}, headers=ALICE
    )
    assert created.status_code == 201, created.text
    ticket = created.json()["id"]

    assert (await client.get(f"/api/v1/tickets/{ticket}/gates")).json() == []
    assert (await client.get(f"/api/v1/tickets/{ticket}/artifacts")).json() == []
    no_gate = await client.post(f"/api/v1/tickets/{ticket}/gates/INITIAL/evaluate", headers=ALICE)
    assert no_gate.status_code == 409 and "INITIAL has no gate" in no_gate.text
    not_current = await client.post(f"/api/v1/tickets/{ticket}/gates/INTEGRATION/evaluate", headers=ALICE)
    assert not_current.status_code == 409 and "ticket is in INITIAL" in not_current.text
    bad = await client.post(f"/api/v1/tickets/{ticket}/gates/not-a-phase/evaluate", headers=ALICE)
    assert bad.status_code == 422 and "phase" in bad.text
    assert (await client.post(f"/api/v1/tickets/{ticket}/gates/INTEGRATION/evaluate")).status_code == 401
    assert (await client.get(f"/api/v1/tickets/{uuid.uuid4()}/gates")).status_code == 404
