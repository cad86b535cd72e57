"""The request consumer's limits: it claims no more than its free slots, and answers malformed requests."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from shared.bus import (
    DATA_FIELD,
    REQUEST_GROUP,
    AgentRequestEvent,
    EventBus,
    RequestPriority,
    ResponseStatus,
    agent_target,
)
from support.tests.bus.helpers import InboxReader

pytestmark = pytest.mark.integration


def request(**overrides: Any) -> AgentRequestEvent:
    fields: dict[str, Any] = {
        "source_agent": "orchestrator",
        "target_agent": "code-review",
        "request_type": "review",
    }
    return AgentRequestEvent(**{**fields, **overrides})


async def test_malformed_request_with_a_reply_address_gets_an_error_response(
    requester: EventBus, server: EventBus
) -> None:
    async def handler(req: AgentRequestEvent) -> dict[str, Any]:
        return {"ok": True}

    inbox = f"{requester.keys.root}:inbox:test:malformed"
    foreign = f"{requester.keys.prefix}:not-an-inbox"
    stream = requester.keys.request_stream(agent_target("code-review"), RequestPriority.NORMAL)
    addressed = {
        "request_id": "bad-1",
        "reply_to": inbox,
        "source_agent": "orchestrator",
        "target_agent": "any",
    }
    await requester.client.xadd(stream, {DATA_FIELD: json.dumps({**addressed, "request_type": "review"})})
    # A reply_to outside the bus's inboxes is never written to: the entry is untrusted.
    await requester.client.xadd(
        stream, {DATA_FIELD: json.dumps({**addressed, "request_id": "bad-2", "reply_to": foreign})}
    )
    await server.serve_requests("code-review", [], handler, concurrency=1)
    async with InboxReader(requester.client, inbox) as answers:
        answer = await answers.wait_for("bad-1", seconds=20)
    # Served in stream order with one slot: both bad entries were handled before this request.
    assert (await requester.request_agent(request())).status is ResponseStatus.SUCCESS
    assert answer.request_id == "bad-1" and answer.status is ResponseStatus.ERROR
    assert answer.source_agent == "code-review" and answer.target_agent == "orchestrator"
    assert answer.error is not None and "required_capability" in answer.error
    assert not await requester.client.exists(foreign)
    assert [d["reason"] for d in await requester.dead_letters()] == ["malformed"] * 2


async def test_a_request_with_an_unbounded_number_is_dead_lettered_not_left_pending(
    requester: EventBus, server: EventBus
) -> None:
    async def handler(req: AgentRequestEvent) -> dict[str, Any]:
        return {"ok": True}

    stream = requester.keys.request_stream(agent_target("code-review"), RequestPriority.NORMAL)
    base = {"source_agent": "orchestrator", "target_agent": "code-review", "request_type": "review"}
    await requester.client.xadd(
        stream, {DATA_FIELD: json.dumps({**base, "request_id": "huge", "timeout_seconds": 1e12})}
    )
    late = {**base, "request_id": "late", "created_at": "9999-12-31T23:59:00Z", "timeout_seconds": 600}
    await requester.client.xadd(stream, {DATA_FIELD: json.dumps(late)})
    await server.serve_requests("code-review", [], handler, concurrency=1)
    # Served in stream order with one slot: both bad entries were handled before this request.
    assert (await requester.request_agent(request())).status is ResponseStatus.SUCCESS
    dead = await requester.dead_letters()
    assert [d["reason"] for d in dead] == ["malformed"] * 2
    assert "created_at" in json.dumps(dead[0]) and "timeout_seconds" in json.dumps(dead[1])  # newest first
    assert (await requester.client.xpending(stream, REQUEST_GROUP))["pending"] == 0


async def test_consumer_claims_no_more_entries_than_its_free_slots(
    requester: EventBus, server: EventBus
) -> None:
    release, running = asyncio.Event(), asyncio.Event()

    async def handler(req: AgentRequestEvent) -> dict[str, Any]:
        running.set()
        await release.wait()
        return {}

    inbox = f"{requester.keys.root}:inbox:test:bounded"
    # Three streams in the low lane; a lane-wide XREADGROUP COUNT 1 would claim one from each.
    targets: list[dict[str, Any]] = [
        {"target_agent": "code-review"},
        {"target_agent": "any", "required_capability": "lint"},
        {"target_agent": "any", "required_capability": "docs"},
    ]
    sent = [request(priority=RequestPriority.LOW, reply_to=inbox, **t) for t in targets for _ in range(2)]
    for item in sent:
        await requester.send_request(item)
    consumer = await server.serve_requests("code-review", ["lint", "docs"], handler, concurrency=1)
    async with asyncio.timeout(10):
        await running.wait()
    pending = [await requester.client.xpending(s, REQUEST_GROUP) for s in consumer.streams]
    assert sum(p["pending"] for p in pending) == 1
    release.set()
    async with InboxReader(requester.client, inbox) as answers:
        for item in sent:
            await answers.wait_for(item.request_id, seconds=20)
    assert all(len(answers.answers[item.request_id]) == 1 for item in sent)
