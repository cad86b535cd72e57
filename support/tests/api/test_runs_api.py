"""The run endpoints over real HTTP (uvicorn) with an in-process worker on real PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import httpx
import pytest

from agent_orchestrator.runs.models import RunStatus
from agent_orchestrator.runs.runtime import RunsRuntime
from agent_orchestrator.runs.worker import WorkerOptions
from support.tests.api.serving import serving
from support.tests.runs import toys as runs_toys
from support.tests.runs.helpers import wait_for_event, wait_for_status

pytestmark = pytest.mark.integration

ALICE = {"Authorization": "Bearer tok-alice"}
BOB = {"Authorization": "Bearer tok-bob"}


@dataclass
class Api:
    client: httpx.AsyncClient
    runtime: RunsRuntime

    async def create(self, workflow: str, input: dict, headers: dict = ALICE, **extra: object) -> dict:
        resp = await self.client.post(
            "/runs", json={"workflow": workflow, "input": input, **extra}, headers=headers
        )
        assert resp.status_code == 201, resp.text
        return resp.json()

    async def wait(self, run_id: str, *statuses: RunStatus) -> dict:
        await wait_for_status(self.runtime, UUID(run_id), statuses)
        return (await self.client.get(f"/runs/{run_id}")).json()


@pytest.fixture
async def api(database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path) -> AsyncIterator[Api]:
    runs_toys.ensure_toy_tables(database_url)
    options = {"workers": 1, "dispatchers": 0, "worker_options": WorkerOptions(lease_seconds=1.5)}
    async with serving(database_url, redis_url, redis_prefix, tmp_path, **options) as (client, app):
        yield Api(client, app.state.runs_runtime)


async def _count(api: Api, sql: str, *params: object) -> int:
    async with api.runtime.pool.connection() as conn:
        row = await (await conn.execute(sql, params)).fetchone()
    return int(row["n"])  # type: ignore[index]


async def test_bad_requests_are_4xx_naming_the_problem(api: Api) -> None:
    c = api.client
    resp = await c.post("/runs", json={"workflow": "nope", "input": {}}, headers=ALICE)
    assert resp.status_code == 404 and "unknown workflow 'nope'" in resp.json()["error"]
    resp = await c.post("/runs", json={"workflow": "toy_deploy", "input": {"fail_times": -1}}, headers=ALICE)
    assert resp.status_code == 422
    assert {f["field"] for f in resp.json()["fields"]} == {"input.label", "input.fail_times"}
    resp = await c.post("/runs", json={"workflow": "toy_deploy", "priority": "high"}, headers=ALICE)
    assert resp.status_code == 422 and resp.json()["fields"][0]["field"] == "priority"
    resp = await c.post("/runs", content=b"{not json", headers={**ALICE, "content-type": "application/json"})
    assert resp.status_code == 400
    assert (
        await c.post("/runs", json={"workflow": "toy_deploy", "input": {"label": "x"}})
    ).status_code == 401
    wrong = {"Authorization": "Bearer guess"}
    resp = await c.post("/runs", json={"workflow": "toy_deploy", "input": {"label": "x"}}, headers=wrong)
    assert resp.status_code == 401
    assert (await c.get("/runs/not-a-uuid")).status_code == 422
    assert (await c.get("/runs/00000000-0000-0000-0000-000000000000")).status_code == 404
    assert (await c.get("/runs", params={"status": "sleeping"})).status_code == 422


async def test_reads_need_a_token_and_a_read_token_cannot_write(api: Api) -> None:
    run = await api.create("toy_deploy", {"label": "secret input"})
    reads = ["/runs", "/approvals", f"/runs/{run['id']}", f"/runs/{run['id']}/history?values=true",
             f"/runs/{run['id']}/events?follow=false", "/api/v1/tickets", "/api/v1/tasks"]  # fmt: skip
    async with httpx.AsyncClient(base_url=api.client.base_url, timeout=30) as bare:
        for path in reads:
            anonymous = await bare.get(path)
            assert anonymous.status_code == 401 and "secret input" not in anonymous.text, path
            guessed = await bare.get(path, headers={"Authorization": "Bearer guess"})
            assert guessed.status_code == 401, path
            assert (
                await bare.get(path, headers={"Authorization": "Bearer tok-viewer"})
            ).status_code == 200, path
            assert (await bare.get(path, headers=ALICE)).status_code == 200, path  # a write token reads too
        viewer = {"Authorization": "Bearer tok-viewer"}
        refused = await bare.post(f"/runs/{run['id']}/cancel", headers=viewer)
        assert refused.status_code == 403 and "may only read" in refused.json()["error"]
        assert (await bare.get("/health")).status_code == 200  # health stays open


async def test_run_succeeds_and_is_listed(api: Api) -> None:
    run = await api.create("toy_deploy", {"label": "listed"})
    assert run["status"] == "queued" and run["created_by"] == "alice"
    done = await api.wait(run["id"], RunStatus.SUCCEEDED)
    assert done["result"]["steps"] == ["prepare", "deploy", "verify"]
    listed = (await api.client.get("/runs", params={"status": "succeeded", "workflow": "toy_deploy"})).json()
    assert run["id"] in {r["id"] for r in listed}


async def test_interrupt_then_approve_resumes_with_the_approver_from_the_token(api: Api) -> None:
    run = await api.create("toy_approval", {"label": "prod"})
    waiting = await api.wait(run["id"], RunStatus.INTERRUPTED)
    assert waiting["interrupt"][0]["value"] == {"question": "deploy prod?", "label": "prod"}
    approvals = (await api.client.get("/approvals")).json()
    assert run["id"] in {a["run_id"] for a in approvals}
    resp = await api.client.post(f"/runs/{run['id']}/approve", json={"comment": "ship it"}, headers=BOB)
    assert resp.status_code == 200, resp.text
    done = await api.wait(run["id"], RunStatus.SUCCEEDED)
    assert done["result"]["decision"] == {"approved": True, "approver": "bob", "comment": "ship it"}
    assert done["result"]["steps"] == ["prepare", "approval", "deploy"]
    assert await _count(api, "SELECT count(*) AS n FROM toy_effects WHERE run_id = %s", run["id"]) == 1
    # The prepare step ran once: resuming continued from the checkpoint.
    assert (
        await _count(
            api, "SELECT count(*) AS n FROM toy_calls WHERE run_id = %s AND node = 'prepare'", run["id"]
        )
        == 1
    )
    again = await api.client.post(f"/runs/{run['id']}/approve", headers=BOB)
    assert again.status_code == 409
    assert run["id"] not in {a["run_id"] for a in (await api.client.get("/approvals")).json()}


async def test_reject_ends_the_run_without_the_side_effect(api: Api) -> None:
    run = await api.create("toy_approval", {"label": "risky"})
    await api.wait(run["id"], RunStatus.INTERRUPTED)
    assert (await api.client.post(f"/runs/{run['id']}/reject")).status_code == 401
    resp = await api.client.post(f"/runs/{run['id']}/reject", json={"comment": "not today"}, headers=ALICE)
    assert resp.status_code == 200
    done = await api.wait(run["id"], RunStatus.SUCCEEDED)
    assert done["result"]["final_result"] == {"rejected": True}
    assert done["result"]["decision"]["approver"] == "alice"
    assert await _count(api, "SELECT count(*) AS n FROM toy_effects WHERE run_id = %s", run["id"]) == 0


async def test_cancel_running_and_queued_runs(api: Api) -> None:
    run = await api.create("toy_forever", {"label": "stuck"})
    await wait_for_event(api.runtime, UUID(run["id"]), "node_started")
    resp = await api.client.post(f"/runs/{run['id']}/cancel", headers=ALICE)
    assert resp.status_code == 200 and resp.json()["cancel_requested"] is True
    done = await api.wait(run["id"], RunStatus.CANCELLED)
    assert done["finished_at"] is not None
    assert (await api.client.post(f"/runs/{run['id']}/cancel", headers=ALICE)).status_code == 409
    later = await api.create("toy_deploy", {"label": "later"}, not_before="2999-01-01T00:00:00Z")
    resp = await api.client.post(f"/runs/{later['id']}/cancel", headers=ALICE)
    assert resp.json()["status"] == "cancelled"


async def _read_sse(api: Api, run_id: str, headers: dict | None = None) -> list[tuple[str | None, str, dict]]:
    events: list[tuple[str | None, str, dict]] = []
    async with api.client.stream("GET", f"/runs/{run_id}/events", headers=headers or {}) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        block: dict[str, str] = {}
        async for line in resp.aiter_lines():
            if line.startswith(":"):
                continue
            if line == "":
                if block:
                    events.append((block.get("id"), block["event"], json.loads(block["data"])))
                    block = {}
                continue
            key, _, value = line.partition(": ")
            block[key] = value
    return events


async def test_events_stream_node_progress_until_the_end(api: Api) -> None:
    run = await api.create("toy_deploy", {"label": "sse"})
    events = await _read_sse(api, run["id"])  # connected before or while it runs; ends when it finishes
    kinds = [(kind, data.get("node")) for _id, kind, data in events]
    assert kinds[0] == ("queued", None)
    assert kinds[-2:] == [("succeeded", None), ("end", None)]
    progress = [k for k in kinds if k[0] in ("node_started", "node_finished")]
    assert progress == [
        ("node_started", "prepare"),
        ("node_finished", "prepare"),
        ("node_started", "deploy"),
        ("node_finished", "deploy"),
        ("node_started", "verify"),
        ("node_finished", "verify"),
    ]
    # Reconnecting with Last-Event-ID resumes after that event.
    middle = events[3][0]
    rest = await _read_sse(api, run["id"], {"Last-Event-ID": str(middle)})
    assert [e[0] for e in rest[:-1]] == [e[0] for e in events[4:-1]]


async def test_history_and_replay_fork_a_new_run_and_keep_the_original(api: Api) -> None:
    run = await api.create("toy_deploy", {"label": "fork"})
    original = await api.wait(run["id"], RunStatus.SUCCEEDED)
    history = (await api.client.get(f"/runs/{run['id']}/history")).json()
    assert [h["next"] for h in history][:4] == [[], ["verify"], ["deploy"], ["prepare"]]
    before_deploy = next(h for h in history if h["next"] == ["deploy"])
    resp = await api.client.post(
        f"/runs/{run['id']}/replay", json={"checkpoint_id": before_deploy["checkpoint_id"]}, headers=ALICE
    )
    assert resp.status_code == 201, resp.text
    fork = resp.json()
    assert fork["id"] != run["id"] and fork["parent_run_id"] == run["id"]
    assert fork["forked_from_checkpoint"] == before_deploy["checkpoint_id"]
    forked = await api.wait(fork["id"], RunStatus.SUCCEEDED)
    assert forked["result"]["final_result"] == original["result"]["final_result"]
    fork_calls = await _count(api, "SELECT count(*) AS n FROM toy_calls WHERE run_id = %s", fork["id"])
    assert fork_calls == 2  # deploy and verify re-ran; prepare came from the copied checkpoint
    # The deploy effect was the original's: the fork found its record and did not redo it.
    assert await _count(api, "SELECT count(*) AS n FROM toy_effects WHERE run_id = %s", fork["id"]) == 0
    assert await _count(api, "SELECT count(*) AS n FROM toy_effects WHERE run_id = %s", run["id"]) == 1
    after = (await api.client.get(f"/runs/{run['id']}/history")).json()
    assert [h["checkpoint_id"] for h in after] == [h["checkpoint_id"] for h in history]
    assert (await api.client.get(f"/runs/{run['id']}")).json() == original
    resp = await api.client.post(f"/runs/{run['id']}/replay", json={"checkpoint_id": "nope"}, headers=ALICE)
    assert resp.status_code == 404 and resp.json()["field"] == "checkpoint_id"
