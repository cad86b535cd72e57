"""The ticket and task endpoints over real HTTP (uvicorn) with an in-process run worker on real
PostgreSQL. No dispatcher (`dispatchers=0`): a ticket's tasks stay ready, its run waits for them;
where a test needs the run to go on, it calls the ticket waker once, as the orchestrator would."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from agent_orchestrator.runs.models import RunStatus
from agent_orchestrator.runs.runtime import RunsRuntime
from agent_orchestrator.runs.workflow_table import default_workflows
from agent_orchestrator.tickets.lifecycle import TicketWaker
from agent_orchestrator.workflows import catalog
from support.tests.api.serving import serving
from support.tests.gitrepo import GitRepo
from support.tests.runs.helpers import wait_for_status

pytestmark = pytest.mark.integration

ALICE = {"Authorization": "Bearer tok-alice"}
BOB = {"Authorization": "Bearer tok-bob"}
INITIAL_TASKS = {"outline", "baseline_review", "baseline_tests"}
NO_SUCH_ID = "00000000-0000-0000-0000-000000000000"
assert "ticket" in default_workflows, catalog.__doc__  # importing the catalog registers the workflow


@dataclass
class Api:
    client: httpx.AsyncClient
    runtime: RunsRuntime
    database_url: str
    repo: Path

    async def create(self, headers: dict[str, str] = ALICE, **fields: Any) -> dict[str, Any]:
        body = {"title": "Add a health endpoint", "repo": {"path": str(self.repo)}, **fields}
        resp = await self.client.post("/api/v1/tickets", json=body, headers=headers)
        assert resp.status_code == 201, resp.text
        return resp.json()  # type: ignore[no-any-return]

    async def settled(self, ticket_id: str) -> dict[str, Any]:
        """The ticket once its run rests (interrupted: waiting for its tasks or a person)."""
        await wait_for_status(self.runtime, UUID(ticket_id), [RunStatus.INTERRUPTED])
        return (await self.client.get(f"/api/v1/tickets/{ticket_id}")).json()  # type: ignore[no-any-return]

    async def tasks(self, ticket_id: str, **params: Any) -> list[dict[str, Any]]:
        resp = await self.client.get("/api/v1/tasks", params={"ticket": ticket_id, **params})
        assert resp.status_code == 200, resp.text
        return resp.json()  # type: ignore[no-any-return]

    async def events(self, ticket_id: str, follow: bool) -> list[tuple[str, dict[str, Any]]]:
        found: list[tuple[str, dict[str, Any]]] = []
        params = {"follow": str(follow).lower()}
        async with self.client.stream("GET", f"/api/v1/tickets/{ticket_id}/events", params=params) as resp:
            assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
            block: dict[str, str] = {}
            async for line in resp.aiter_lines():
                if line.startswith(":"):
                    continue
                if line == "":
                    if block:
                        found.append((block["event"], json.loads(block["data"])))
                        block = {}
                    continue
                key, _, value = line.partition(": ")
                block[key] = value
        return found


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    git = GitRepo(tmp_path_factory.mktemp("tickets") / "service")
    git.commit("first", {"app.py": "print('hello')\n"})
    return git.path


@pytest.fixture
async def api(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path, repo: Path
) -> AsyncIterator[Api]:
    # No agents here (dispatchers=0): tasks stay ready and ticket runs wait for them.
    async with serving(database_url, redis_url, redis_prefix, tmp_path, workers=1, dispatchers=0) as (
        client,
        app,
    ):
        yield Api(client, app.state.runs_runtime, database_url, repo)


async def test_create_starts_the_run_and_the_initial_tasks(api: Api) -> None:
    ticket = await api.create(priority="high", labels=["api", "api", "health"])
    assert ticket["created_by"] == "alice" and ticket["phase"] == "INITIAL" and ticket["status"] == "open"
    assert ticket["version"] >= 1 and ticket["labels"] == ["api", "health"]
    assert ticket["run_id"] == ticket["id"]
    run = await api.client.get(f"/runs/{ticket['id']}")
    assert run.status_code == 200 and run.json()["workflow"] == "ticket"

    shown = await api.settled(ticket["id"])
    assert shown["run_status"] == "interrupted" and shown["waiting_for"] == "tasks"
    assert shown["phase_tasks"]["total"] == 3 and shown["phase_tasks"]["counts"] == {"ready": 3}
    tasks = await api.tasks(ticket["id"])
    assert {t["key"] for t in tasks} == INITIAL_TASKS
    assert {(t["phase"], t["status"]) for t in tasks} == {("INITIAL", "ready")}
    assert await api.tasks(ticket["id"], status=["succeeded", "failed"]) == []
    assert len(await api.tasks(ticket["id"], status="ready", phase="INITIAL", limit=2)) == 2
    assert await api.tasks(ticket["id"], phase="INTEGRATION") == []
    one = (await api.client.get(f"/api/v1/tasks/{tasks[0]['id']}")).json()
    assert one["id"] == tasks[0]["id"] and one["ticket_id"] == ticket["id"]
    # Without a ticket: the tasks of every ticket in work.
    everywhere = (await api.client.get("/api/v1/tasks", params={"status": "ready", "limit": 500})).json()
    assert {t["id"] for t in tasks} <= {t["id"] for t in everywhere}

    events = await api.events(ticket["id"], follow=False)
    kinds = [kind for kind, _data in events]
    assert kinds[0] == "queued" and kinds[-1] == "end"
    ready = [data["data"]["key"] for kind, data in events if kind == "task_ready"]
    assert sorted(ready) == sorted(INITIAL_TASKS)
    assert "interrupted" in kinds


async def test_list_filters_combine(api: Api) -> None:
    high = await api.create(title="one", priority="high", labels=["list-filters"])
    low = await api.create(title="two", priority="low", labels=["list-filters", "other"], headers=BOB)

    async def ids(**params: Any) -> list[str]:
        resp = await api.client.get("/api/v1/tickets", params={"label": "list-filters", **params})
        assert resp.status_code == 200, resp.text
        return [t["id"] for t in resp.json()]

    assert await ids() == [low["id"], high["id"]]  # newest first
    assert await ids(priority="high") == [high["id"]]
    assert await ids(created_by="bob") == [low["id"]]
    assert await ids(status="open", phase="INITIAL") == [low["id"], high["id"]]
    assert await ids(status="cancelled") == []
    assert await ids(limit=1) == [low["id"]] and await ids(limit=1, offset=1) == [high["id"]]
    assert await ids(label="other") == [low["id"]]


async def test_a_stale_version_is_409_with_the_current_version_and_changes_nothing(api: Api) -> None:
    ticket = await api.create(title="before")
    url = f"/api/v1/tickets/{ticket['id']}"
    version = ticket["version"]
    first = await api.client.patch(url, json={"title": "mine", "expected_version": version}, headers=ALICE)
    assert first.status_code == 200 and first.json()["version"] > version
    current = first.json()["version"]

    stale = await api.client.patch(url, json={"title": "theirs", "expected_version": version}, headers=BOB)
    assert stale.status_code == 409
    body = stale.json()
    assert body["current_version"] == current and body["expected_version"] == version
    assert body["field"] == "expected_version"
    after = (await api.client.get(url)).json()
    assert after["title"] == "mine" and after["version"] == current

    head = await api.client.patch(
        url, json={"head_branch": "feature/x", "expected_version": current}, headers=BOB
    )
    assert head.status_code == 200 and head.json()["head_branch"] == "feature/x"
    missing = await api.client.patch(url, json={"title": "no version"}, headers=ALICE)
    assert missing.status_code == 422 and _fields(missing) == {"expected_version"}
    nothing = await api.client.patch(url, json={"expected_version": current}, headers=ALICE)
    assert nothing.status_code == 422 and "nothing to change" in nothing.text
    bad = await api.client.patch(url, json={"priority": "urgent", "expected_version": 1}, headers=ALICE)
    assert bad.status_code == 422 and _fields(bad) == {"priority"}
    assert (await api.client.patch(url, json={"title": "x", "expected_version": 1})).status_code == 401


async def test_a_refused_transition_is_409_with_the_allowed_moves(api: Api) -> None:
    ticket = await api.create()
    url = f"/api/v1/tickets/{ticket['id']}/transition"
    resp = await api.client.post(url, json={"to_phase": "DONE", "reason": "skip it all"}, headers=ALICE)
    assert resp.status_code == 409
    body = resp.json()
    assert body["allowed"] == ["IMPLEMENTATION", "BLOCKED", "CANCELLED"]
    assert body["from_phase"] == "INITIAL" and body["to_phase"] == "DONE" and body["field"] == "to_phase"
    stale = await api.client.post(url, json={"to_phase": "BLOCKED", "expected_version": 99}, headers=ALICE)
    assert stale.status_code == 409 and stale.json()["current_version"] == ticket["version"]
    assert (await api.client.get(f"/api/v1/tickets/{ticket['id']}")).json()["phase"] == "INITIAL"


async def test_a_blocked_ticket_moved_back_resumes_its_run(api: Api) -> None:
    ticket = await api.create()
    tid = ticket["id"]
    await api.settled(tid)
    tasks = await api.tasks(tid)
    for task in tasks:
        resp = await api.client.post(f"/api/v1/tasks/{task['id']}/cancel", headers=BOB)
        assert resp.status_code == 200 and resp.json()["status"] == "cancelled"
    again = await api.client.post(f"/api/v1/tasks/{tasks[0]['id']}/cancel", headers=BOB)
    assert again.status_code == 409 and "already cancelled" in again.json()["error"]
    # What the orchestrator's waker does when a phase's tasks are all final.
    waker = TicketWaker(api.runtime.pool, api.database_url)
    assert await waker.wake(UUID(tid)) == [UUID(tid)]
    blocked = await api.settled(tid)
    assert blocked["phase"] == "BLOCKED" and blocked["status"] == "blocked"
    assert blocked["waiting_for"] == "person"

    for task in tasks:
        resp = await api.client.post(f"/api/v1/tasks/{task['id']}/retry", headers=ALICE)
        assert resp.status_code == 200 and resp.json()["status"] == "ready"
    not_failed = await api.client.post(f"/api/v1/tasks/{tasks[0]['id']}/retry", headers=ALICE)
    assert not_failed.status_code == 409 and not_failed.json()["status"] == "ready"
    url = f"/api/v1/tickets/{tid}/transition"
    refused = await api.client.post(url, json={"to_phase": "REFACTORING"}, headers=ALICE)
    assert refused.status_code == 409 and refused.json()["allowed"] == ["INITIAL", "CANCELLED"]
    moved = await api.client.post(url, json={"to_phase": "INITIAL", "reason": "tasks retried"}, headers=ALICE)
    assert moved.status_code == 200 and moved.json()["status"] == "open"

    resumed = await api.settled(tid)
    assert resumed["phase"] == "INITIAL" and resumed["waiting_for"] == "tasks"
    assert resumed["phase_tasks"]["counts"] == {"ready": 3}
    history = (await api.client.get(f"/api/v1/tickets/{tid}/history")).json()
    assert [(h["from_phase"], h["to_phase"], h["actor"]) for h in history] == [
        (None, "INITIAL", "alice"),
        ("INITIAL", "BLOCKED", "ticket-workflow"),
        ("BLOCKED", "INITIAL", "alice"),
    ]
    assert history[2]["reason"] == "tasks retried"
    events = await api.events(tid, follow=False)
    phases = [(d["data"]["from"], d["data"]["to"]) for kind, d in events if kind == "ticket_phase"]
    assert phases == [("INITIAL", "BLOCKED")]
    resumes = [d["data"] for kind, d in events if kind == "resumed"]
    assert resumes[-1] == {"by": "alice", "resume": {"moved_to": "INITIAL", "by": "alice"}}
    assert sum(1 for kind, _d in events if kind == "task_cancelled") == 3


async def test_cancel_ends_the_ticket_its_tasks_and_its_run(api: Api) -> None:
    ticket = await api.create()
    tid = ticket["id"]
    await api.settled(tid)
    url = f"/api/v1/tickets/{tid}/cancel"
    assert (await api.client.post(url)).status_code == 401
    resp = await api.client.post(url, headers=BOB)
    assert resp.status_code == 200
    assert resp.json()["phase"] == "CANCELLED" and resp.json()["status"] == "cancelled"
    assert {t["status"] for t in await api.tasks(tid)} == {"cancelled"}
    run = (await api.client.get(f"/runs/{tid}")).json()
    assert run["status"] == "cancelled"
    again = await api.client.post(url, headers=BOB)
    assert again.status_code == 409 and again.json()["allowed"] == []
    history = (await api.client.get(f"/api/v1/tickets/{tid}/history")).json()
    assert [(h["to_phase"], h["actor"]) for h in history] == [("INITIAL", "alice"), ("CANCELLED", "bob")]
    task = (await api.tasks(tid))[0]
    retry = await api.client.post(f"/api/v1/tasks/{task['id']}/retry", headers=ALICE)
    assert retry.status_code == 409 and "cancelled" in retry.json()["error"]
    # Following a finished run's events ends with the run's end.
    events = await api.events(tid, follow=True)
    assert [kind for kind, _d in events][-2:] == ["cancelled", "end"]
    assert events[-1][1] == {"status": "cancelled"}
    assert sum(1 for kind, _d in events if kind == "task_cancelled") == 3


def _fields(resp: httpx.Response) -> set[str]:
    return {f["field"] for f in resp.json()["fields"]}


def _names(resp: httpx.Response, field: str) -> bool:
    """The 422 names `field` (or an item of it: `status.0` for the first of repeated `status`)."""
    return resp.status_code == 422 and any(f == field or f.startswith(f"{field}.") for f in _fields(resp))


async def test_bad_input_is_a_4xx_naming_the_field(api: Api, tmp_path: Path) -> None:
    c = api.client
    repo = {"path": str(api.repo)}

    async def create(body: dict[str, Any]) -> httpx.Response:
        return await c.post("/api/v1/tickets", json={"title": "t", "repo": repo, **body}, headers=ALICE)

    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    plain = tmp_path / "plain"
    plain.mkdir()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"title": "   "}, "title"),
        ({"title": "two\nlines"}, "title"),
        ({"priority": "urgent"}, "priority"),
        ({"labels": [f"l{i}" for i in range(21)]}, "labels"),
        ({"repo": {"path": "relative/repo"}}, "repo.path"),
        ({"repo": {"path": str(tmp_path / "missing")}}, "repo.path"),
        ({"repo": {"path": str(a_file)}}, "repo.path"),
        ({"repo": {"path": str(plain)}}, "repo.path"),
        ({"repo": {"path": f"{api.repo}/../{api.repo.name}"}}, "repo.path"),
        ({"repo": {"path": str(api.repo), "base_branch": "nope"}}, "repo.base_branch"),
        ({"repo": {"path": str(api.repo), "head_branch": "-rf"}}, "repo.head_branch"),
        ({"phase_file": "nope"}, "phase_file"),
        ({"phase_file": "../etc"}, "phase_file"),
        ({"created_by": "mallory"}, "created_by"),
    ]
    for body, field in cases:
        resp = await create(body)
        assert resp.status_code == 422, (body, resp.text)
        assert field in _fields(resp), (body, resp.text)
    no_repo = await c.post("/api/v1/tickets", json={"title": "t"}, headers=ALICE)
    assert no_repo.status_code == 422 and _fields(no_repo) == {"repo"}
    for params, field in [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"offset": -1}, "offset"),
        ({"status": "sleeping"}, "status"),
        ({"priority": "urgent"}, "priority"),
        ({"phase": "lower"}, "phase"),
    ]:
        resp = await c.get("/api/v1/tickets", params=params)
        assert resp.status_code == 422 and field in _fields(resp), (params, resp.text)
    for params, field in [
        ({"limit": 0}, "limit"),
        ({"limit": 10_000}, "limit"),
        ({"status": "sleeping"}, "status"),
        ({"ticket": "not-a-uuid"}, "ticket"),
    ]:
        resp = await c.get("/api/v1/tasks", params=params)
        assert _names(resp, field), (params, resp.text)
    ticket = await api.create()
    bad_move = await c.post(
        f"/api/v1/tickets/{ticket['id']}/transition", json={"to_phase": "done"}, headers=ALICE
    )
    assert bad_move.status_code == 422 and _fields(bad_move) == {"to_phase"}

    for path in (f"/api/v1/tickets/{NO_SUCH_ID}", f"/api/v1/tickets/{NO_SUCH_ID}/history",
                 f"/api/v1/tickets/{NO_SUCH_ID}/events", f"/api/v1/tasks/{NO_SUCH_ID}"):  # fmt: skip
        assert (await c.get(path)).status_code == 404, path
    assert (await c.get("/api/v1/tasks", params={"ticket": NO_SUCH_ID})).status_code == 404
    for path in (f"/api/v1/tickets/{NO_SUCH_ID}/cancel", f"/api/v1/tasks/{NO_SUCH_ID}/retry",
                 f"/api/v1/tasks/{NO_SUCH_ID}/cancel"):  # fmt: skip
        assert (await c.post(path, headers=ALICE)).status_code == 404, path
    moved = await c.post(
        f"/api/v1/tickets/{NO_SUCH_ID}/transition", json={"to_phase": "BLOCKED"}, headers=ALICE
    )
    assert moved.status_code == 404
    assert (await c.get("/api/v1/tickets/not-a-uuid")).status_code == 422

    # Writes need the token: without one, or with a wrong one, 401 and nothing happens.
    wrong = {"Authorization": "Bearer guess"}
    for headers in ({}, wrong):
        resp = await c.post("/api/v1/tickets", json={"title": "t", "repo": repo}, headers=headers)
        assert resp.status_code == 401
        for path in (f"/api/v1/tickets/{ticket['id']}/cancel", f"/api/v1/tasks/{NO_SUCH_ID}/retry",
                     f"/api/v1/tasks/{NO_SUCH_ID}/cancel"):  # fmt: skip
            assert (await c.post(path, headers=headers)).status_code == 401, path
        transition = {"to_phase": "BLOCKED"}
        resp = await c.post(f"/api/v1/tickets/{ticket['id']}/transition", json=transition, headers=headers)
        assert resp.status_code == 401
    assert (await c.get(f"/api/v1/tickets/{ticket['id']}")).json()["phase"] == "INITIAL"
