"""Collaboration through the orchestrator's API (the real app on a port, real PostgreSQL): threads,
messages after a cursor, idempotent posts, handoffs decided by a person (and one nobody takes going
to a person at its timeout), the live WebSocket with catch-up after a dropped connection, and the
refusals (401 without a token, 403 with a read-only one, 404, 409, 422 naming the field)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from support.tests.api.serving import serving
from support.tests.gitrepo import GitRepo

pytestmark = pytest.mark.integration

ALICE = {"Authorization": "Bearer tok-alice"}
VIEWER = {"Authorization": "Bearer tok-viewer"}
BASE = "/api/v1/collaboration"


@dataclass
class Api:
    client: httpx.AsyncClient
    repo: Path

    @property
    def ws_url(self) -> str:
        return str(self.client.base_url).replace("http://", "ws://") + f"{BASE}/ws"

    async def ticket(self) -> dict[str, Any]:
        body = {"title": "Add a farewell", "repo": {"path": str(self.repo)}}
        resp = await self.client.post("/api/v1/tickets", json=body, headers=ALICE)
        assert resp.status_code == 201, resp.text
        return resp.json()  # type: ignore[no-any-return]

    async def thread(self, **fields: Any) -> dict[str, Any]:
        resp = await self.client.post(
            f"{BASE}/threads", json={"topic": "a question", **fields}, headers=ALICE
        )
        assert resp.status_code == 201, resp.text
        return resp.json()  # type: ignore[no-any-return]

    async def post(self, thread: str, body: str, **fields: Any) -> dict[str, Any]:
        resp = await self.client.post(
            f"{BASE}/threads/{thread}/messages", json={"body": body, **fields}, headers=ALICE
        )
        assert resp.status_code == 201, resp.text
        return resp.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    git = GitRepo(tmp_path_factory.mktemp("collab") / "repo")
    git.commit("initial", {"README.md": "hello\n"})
    return git.path


@pytest.fixture
async def api(
    database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path, repo: Path
) -> AsyncIterator[Api]:
    # The collaboration engine runs with the dispatcher; no registry answers, so no agent is found.
    async with serving(database_url, redis_url, redis_prefix, tmp_path, workers=1, dispatchers=1) as (
        client,
        _,
    ):
        yield Api(client, repo)


async def test_a_thread_keeps_its_messages_in_order_and_a_retried_post_once(api: Api) -> None:
    ticket = await api.ticket()
    thread = await api.thread(ticket_id=ticket["id"], participants=[{"name": "code-review", "kind": "agent"}])
    assert {(p["name"], p["kind"]) for p in thread["participants"]} == {
        ("alice", "person"),
        ("code-review", "agent"),
    }

    question = await api.post(thread["id"], "Why is greet() not covered?", kind="question")
    attachment = {"type": "file_line", "path": "greeter/__init__.py", "line": 3}
    first = await api.post(
        thread["id"],
        "It is now.",
        kind="answer",
        reply_to=question["id"],
        attachments=[attachment],
        client_key="k1",
    )
    again = await api.post(
        thread["id"], "It is now.", kind="answer", reply_to=question["id"], client_key="k1"
    )
    assert again["id"] == first["id"]  # a retried post is the same message
    assert first["attachments"] == [attachment]

    page = (
        await api.client.get(f"{BASE}/threads/{thread['id']}/messages", params={"after": question["id"]})
    ).json()
    assert [m["id"] for m in page] == [first["id"]]
    whole = (await api.client.get(f"{BASE}/threads/{thread['id']}")).json()
    assert [m["body"] for m in whole["messages"]] == ["Why is greet() not covered?", "It is now."]
    listed = (await api.client.get(f"{BASE}/threads", params={"ticket": ticket["id"]})).json()
    assert [t["id"] for t in listed] == [thread["id"]]

    resolved = await api.client.post(f"{BASE}/threads/{thread['id']}/resolve", headers=ALICE)
    assert resolved.json()["status"] == "resolved" and resolved.json()["resolved_by"] == "alice"
    refused = await api.client.post(
        f"{BASE}/threads/{thread['id']}/messages", json={"body": "late"}, headers=ALICE
    )
    assert refused.status_code == 409 and "resolved" in refused.text


async def test_writes_need_a_write_token_and_bad_input_names_the_field(api: Api) -> None:
    thread = await api.thread()
    url = f"{BASE}/threads/{thread['id']}/messages"
    assert (await api.client.post(url, json={"body": "hi"})).status_code == 401
    assert (await api.client.post(url, json={"body": "hi"}, headers=VIEWER)).status_code == 403
    assert (await api.client.get(url, headers={"Authorization": "Bearer wrong"})).status_code == 401

    bad = [
        ({"body": ""}, "body"),
        ({"body": "x", "kind": "shout"}, "kind"),
        ({"body": "x", "reply_to": 0}, "reply_to"),
        ({"body": "x", "attachments": [{"type": "file_line", "path": "a", "line": -1}]}, "attachments"),
    ]
    for body, field in bad:
        resp = await api.client.post(url, json=body, headers=ALICE)
        assert resp.status_code == 422, resp.text
        assert any(f["field"].startswith(field) for f in resp.json()["fields"]), resp.text
    elsewhere = await api.thread()
    other = await api.post(elsewhere["id"], "not here")
    resp = await api.client.post(url, json={"body": "x", "reply_to": other["id"]}, headers=ALICE)
    assert resp.status_code == 422 and resp.json()["fields"][0]["field"] == "reply_to"
    unknown = "00000000-0000-0000-0000-000000000000"
    assert (await api.client.get(f"{BASE}/threads/{unknown}")).status_code == 404
    assert (
        await api.client.post(f"{BASE}/threads/{unknown}/messages", json={"body": "x"}, headers=ALICE)
    ).status_code == 404
    orphan = {"topic": "t", "run_id": unknown}
    assert (await api.client.post(f"{BASE}/threads", json=orphan, headers=ALICE)).status_code == 404
    no_target = {"thread_id": thread["id"], "request_type": "GENERATE_CODE", "reason": "r"}
    resp = await api.client.post(f"{BASE}/handoffs", json=no_target, headers=ALICE)
    assert resp.status_code == 422 and "to_capability" in resp.text


async def test_a_handoff_nobody_takes_goes_to_a_person_who_accepts_and_resumes_the_work(api: Api) -> None:
    ticket = await api.ticket()
    resume = {"capability": "code_review", "request_type": "REVIEW_CODE", "payload": {"repo": str(api.repo)}}
    body = {
        "ticket_id": ticket["id"],
        "to_capability": "feature_dev",
        "request_type": "GENERATE_CODE",
        "reason": "the review asked for a docstring",
        "context": {"instruction": "add it", "on_person": resume},
        "timeout_seconds": 1,
    }
    created = await api.client.post(f"{BASE}/handoffs", json=body, headers=ALICE)
    assert created.status_code == 201, created.text
    handoff = created.json()
    assert (handoff["status"], handoff["person"]) == ("offered", "alice")  # the ticket's owner decides

    # Nobody accepts within its timeout: a person is asked, in the thread, never left in a void.
    handoff = await _until(api, handoff["id"], "awaiting_person")
    thread = (await api.client.get(f"{BASE}/threads/{handoff['thread_id']}")).json()
    assert thread["messages"][-1]["kind"] == "question" and "@alice" in thread["messages"][-1]["body"]

    accepted = await api.client.post(
        f"{BASE}/handoffs/{handoff['id']}/accept", json={"comment": "added in feature/doc"}, headers=ALICE
    )
    assert accepted.status_code == 200, accepted.text
    done = accepted.json()
    assert (done["status"], done["accepted_by"], done["accepted_kind"]) == ("accepted", "alice", "person")
    task = (await api.client.get(f"/api/v1/tasks/{done['follow_up_task_id']}")).json()
    assert (task["capability"], task["request_type"]) == ("code_review", "REVIEW_CODE")
    assert task["payload"]["_handoff"]["answer"] == "added in feature/doc"  # the answer travels with the work
    answers = [m for m in (await api.client.get(f"{BASE}/threads/{handoff['thread_id']}")).json()["messages"]]
    assert answers[-1]["kind"] == "answer" and answers[-1]["author"] == "alice"
    again = await api.client.post(f"{BASE}/handoffs/{handoff['id']}/decline", headers=ALICE)
    assert again.status_code == 409


async def _until(api: Api, handoff_id: str, status: str) -> dict[str, Any]:
    async with asyncio.timeout(30):
        while True:  # the engine's move is in SQL; its NOTIFY is the engine's, not the client's
            handoff = (await api.client.get(f"{BASE}/handoffs/{handoff_id}")).json()
            if handoff["status"] == status:
                return handoff  # type: ignore[no-any-return]
            await asyncio.sleep(0.1)


async def test_the_websocket_streams_live_and_catches_up_after_a_drop(api: Api) -> None:
    thread = await api.thread()
    url = f"{api.ws_url}?thread={thread['id']}"
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(url):
            pass  # refused at the handshake without a token
    first = await api.post(thread["id"], "one")
    seen: list[dict[str, Any]] = []
    async with websockets.connect(url, additional_headers=VIEWER) as socket:
        seen.append(json.loads(await socket.recv())["message"])  # what was there before
        posted = asyncio.create_task(api.post(thread["id"], "two"))
        seen.append(json.loads(await socket.recv())["message"])  # live
        await posted
    # Offline meanwhile: two more messages. Reconnecting from the last id seen misses nothing.
    await api.post(thread["id"], "three")
    await api.post(thread["id"], "four")
    async with websockets.connect(f"{url}&after={seen[-1]['id']}", additional_headers=VIEWER) as socket:
        seen.append(json.loads(await socket.recv())["message"])
        seen.append(json.loads(await socket.recv())["message"])
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):  # nothing more: no message is sent twice
                await socket.recv()
    assert [m["body"] for m in seen] == ["one", "two", "three", "four"]
    assert seen[0]["id"] == first["id"] and len({m["id"] for m in seen}) == 4
