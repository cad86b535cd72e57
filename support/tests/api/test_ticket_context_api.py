"""The ticket context endpoints over real HTTP (uvicorn) on real PostgreSQL: read the whole context
with its summary, change it with the version it was read at, and the refusals (stale 409 with the
current version, 422 naming each bad field, 401 without a token), none of which changes anything.

No run workers and no dispatcher: the tickets are filed through the store, so nothing but the test
touches them and every version is the test's own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest

from agent_orchestrator.api.ticket_context import MAX_KEYS, MAX_VALUE_BYTES
from agent_orchestrator.tasks import Task, TaskStatus
from agent_orchestrator.tickets import (
    SECTIONS_KEY,
    SUMMARY_KEY,
    Ticket,
    TicketCreate,
    TicketStore,
    context_update_for_phase,
)
from support.tests.api.serving import serving

pytestmark = pytest.mark.integration

ALICE = {"Authorization": "Bearer tok-alice"}
NO_SUCH_ID = "00000000-0000-0000-0000-000000000000"


@dataclass
class Api:
    client: httpx.AsyncClient
    store: TicketStore

    async def ticket(self) -> Ticket:
        create = {"title": "Add a health endpoint", "repo": {"path": "/srv/shop"}, "created_by": "alice"}
        return await self.store.create(TicketCreate.model_validate(create))

    async def context(self, ticket_id: Any) -> dict[str, Any]:
        resp = await self.client.get(f"/api/v1/tickets/{ticket_id}/context")
        assert resp.status_code == 200, resp.text
        return resp.json()  # type: ignore[no-any-return]

    async def post(
        self, ticket_id: Any, body: dict[str, Any], headers: dict[str, str] | None = ALICE
    ) -> httpx.Response:
        return await self.client.post(f"/api/v1/tickets/{ticket_id}/context", json=body, headers=headers)


@pytest.fixture
async def api(database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path) -> AsyncIterator[Api]:
    async with serving(database_url, redis_url, redis_prefix, tmp_path, workers=0, dispatchers=0) as (
        client,
        app,
    ):
        yield Api(client, TicketStore(app.state.runs_runtime.pool))


def _tests_task(ticket: Ticket, status: str) -> Task:
    """A finished RUN_PIPELINE task of the ticket, as the task store returns it."""
    now = datetime.now(UTC)
    result = {
        "status": status,
        "passed": 3,
        "failed": 1,
        "total": 4,
        "commit": "c" * 40,
        "log_tail": "E boom",
    }
    nulls = ("claimed_by", "lease_expires_at", "deadline_at", "error", "error_class", "error_kind")
    row = dict.fromkeys((*nulls, "blocked_reason", "wait_reason")) | {"id": uuid4(), "ticket_id": ticket.id}
    row |= {"phase": "INTEGRATION", "key": "tests", "title": "tests", "capability": "cicd", "payload": {}}
    row |= {"request_type": "RUN_PIPELINE", "priority": 0, "depends_on": [], "locks": [], "attempt": 1}
    row |= {"status": TaskStatus.SUCCEEDED, "failures": 0, "max_attempts": 3, "timeout_seconds": 600}
    row |= {"assigned_agent": "cicd-1", "cancel_requested": False, "result": result, "not_before": now}
    row |= {"created_at": now, "updated_at": now, "started_at": now, "finished_at": now}
    return Task.model_validate(row)


async def test_get_shows_the_whole_context_and_the_summary(api: Api) -> None:
    ticket = await api.ticket()
    fresh = await api.context(ticket.id)
    assert fresh == {
        "ticket_id": str(ticket.id),
        "phase": "INITIAL",
        "version": ticket.version,
        "context": {},
        "summary": None,
    }
    # What the ticket workflow writes at the end of a phase.
    update = context_update_for_phase(ticket, "INTEGRATION", [_tests_task(ticket, "failed")])
    stored = await api.store.update_context(
        ticket.id, update, expected_version=ticket.version, allow_reserved=True
    )
    shown = await api.context(ticket.id)
    assert shown["version"] == stored.version
    assert set(shown["context"]) == {"tests", SECTIONS_KEY, SUMMARY_KEY}
    assert shown["summary"] == shown["context"][SUMMARY_KEY]
    [failing] = shown["summary"]["sections"]["test_results"]
    assert failing["task"] == "tests" and failing["agent"] == "cicd-1" and failing["failure"] is True

    missing = await api.client.get(f"/api/v1/tickets/{NO_SUCH_ID}/context")
    assert missing.status_code == 404 and NO_SUCH_ID in missing.json()["error"]


async def test_post_sets_and_removes_with_the_version_it_read(api: Api) -> None:
    ticket = await api.ticket()
    first = await api.post(
        ticket.id,
        {
            "expected_version": ticket.version,
            "set": {"notes": "staging is flaky", "review": {"verdict": "approve"}},
        },
    )
    assert first.status_code == 200, first.text
    after = first.json()
    assert after["id"] == str(ticket.id) and after["version"] == ticket.version + 1
    assert after["context"] == {"notes": "staging is flaky", "review": {"verdict": "approve"}}

    second = await api.post(ticket.id, {"expected_version": after["version"], "remove": ["review"]})
    assert second.status_code == 200, second.text
    shown = await api.context(ticket.id)
    assert shown["version"] == after["version"] + 1 and shown["context"] == {"notes": "staging is flaky"}


async def test_a_stale_version_is_a_409_naming_the_current_one_and_changes_nothing(api: Api) -> None:
    ticket = await api.ticket()
    moved = await api.post(ticket.id, {"expected_version": ticket.version, "set": {"notes": "first"}})
    assert moved.status_code == 200, moved.text
    before = await api.context(ticket.id)

    stale = await api.post(ticket.id, {"expected_version": ticket.version, "set": {"notes": "second"}})
    assert stale.status_code == 409
    body = stale.json()
    assert body["field"] == "expected_version" and body["ticket_id"] == str(ticket.id)
    assert body["expected_version"] == ticket.version and body["current_version"] == before["version"]
    assert f"current version is {before['version']}" in body["error"]
    assert await api.context(ticket.id) == before


@pytest.mark.parametrize(
    ("change", "fields"),
    [
        ({"set": {SUMMARY_KEY: {"forged": True}}}, ["set._summary"]),
        ({"set": {"_mine": 1, "Bad-Key": 2, "ok_key": 3}}, ["set._mine", "set.Bad-Key"]),
        ({"set": {"big": "x" * (MAX_VALUE_BYTES + 1)}}, ["set.big"]),
        ({"set": {"nul": "a\u0000b"}}, ["set.nul"]),
        ({"remove": [SECTIONS_KEY, "notes"], "set": {"notes": "n"}}, ["remove[0]", "remove[1]"]),
        ({}, ["set"]),
        ({"remove": ["absent"]}, ["remove[0]"]),  # checked under the ticket's lock, by the database
    ],
)
async def test_bad_keys_and_values_are_422s_naming_the_field(
    api: Api, change: dict[str, Any], fields: list[str]
) -> None:
    ticket = await api.ticket()
    before = await api.context(ticket.id)
    resp = await api.post(ticket.id, {"expected_version": ticket.version, **change})
    assert resp.status_code == 422, resp.text
    assert [f["field"] for f in resp.json()["fields"]] == fields
    assert await api.context(ticket.id) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"set": {"notes": "n"}}, "expected_version"),
        ({"expected_version": 0, "set": {"notes": "n"}}, "expected_version"),
        ({"expected_version": 1, "set": {"notes": "n"}, "actor": "mallory"}, "actor"),
        ({"expected_version": 1, "set": {f"k{i}": i for i in range(MAX_KEYS + 1)}}, "set"),
        ({"expected_version": 1, "remove": "notes"}, "remove"),
    ],
)
async def test_malformed_bodies_are_422s_naming_the_field(api: Api, body: dict[str, Any], field: str) -> None:
    ticket = await api.ticket()
    resp = await api.post(ticket.id, body)
    assert resp.status_code == 422, resp.text
    assert field in [f["field"] for f in resp.json()["fields"]]


async def test_writes_need_the_token(api: Api) -> None:
    ticket = await api.ticket()
    before = await api.context(ticket.id)
    body = {"expected_version": ticket.version, "set": {"notes": "n"}}
    for headers in (None, {"Authorization": "Bearer wrong"}):
        resp = await api.post(ticket.id, body, headers=headers)
        assert resp.status_code == 401, resp.text
    assert await api.context(ticket.id) == before
    assert (await api.post(NO_SUCH_ID, body)).status_code == 404
