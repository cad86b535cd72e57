"""Bus requests served by consumers in other processes (support/tests/bus/consumer_process.py).

Work sharing between replicas, priority, expiry, malformed entries and duplicate delivery, each with
the consumer in a child process and the requester in this one.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from shared.bus import (
    DATA_FIELD,
    REQUEST_GROUP,
    AgentRequestEvent,
    BusOptions,
    EventBus,
    RequestPriority,
    ResponseStatus,
    agent_target,
    capability_target,
    lanes,
    utc_now,
)
from support.tests.bus.consumer_process import Worker, executed_key, release_key
from support.tests.bus.helpers import InboxReader

pytestmark = pytest.mark.integration

FAST = BusOptions(claim_idle_ms=300, block_ms=200)


@pytest.fixture
async def workers() -> AsyncIterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        await worker.stop()


@pytest.fixture
async def requester(redis_url: str, redis_prefix: str) -> AsyncIterator[EventBus]:
    async with EventBus(redis_url, redis_prefix, agent_id="orchestrator", options=FAST) as bus:
        yield bus


def worker_args(redis_url: str, prefix: str, name: str, *extra: str) -> list[str]:
    return ["--redis-url", redis_url, "--prefix", prefix, "--agent", "cicd", "--name", name, *extra]


def request(inbox: str, n: int, **overrides: Any) -> AgentRequestEvent:
    fields: dict[str, Any] = {
        "source_agent": "orchestrator",
        "target_agent": "cicd",
        "request_type": "echo",
        "payload": {"n": n},
        "timeout_seconds": 30,
        "reply_to": inbox,
    }
    return AgentRequestEvent(**{**fields, **overrides})


async def next_execution(bus: EventBus, prefix: str) -> dict[str, Any]:
    """The next execution a --record worker announced (in start order)."""
    popped = await bus.client.blpop([executed_key(prefix)], timeout=20)
    assert popped is not None, "no worker started a request in time"
    return dict(json.loads(popped[1]))


async def executions(bus: EventBus, prefix: str) -> list[dict[str, Any]]:
    return [json.loads(item) for item in await bus.client.lrange(executed_key(prefix), 0, -1)]


async def test_replicas_claim_no_more_than_free_slots_and_urgent_overtakes_queued_work(
    redis_url: str, redis_prefix: str, requester: EventBus, workers: list[Worker]
) -> None:
    # Capabilities give each priority lane three streams: a read of a whole lane could claim three.
    capabilities = ["--capability", "build", "--capability", "test"]
    for name in ("a", "b"):
        args = worker_args(
            redis_url, redis_prefix, name, *capabilities, "--concurrency", "1", "--record", "--gate"
        )
        workers.append(await Worker.start(*args))
    inbox = f"{requester.keys.root}:inbox:test:share"
    targets: list[dict[str, Any]] = [
        {"target_agent": "cicd"},
        {"target_agent": "any", "required_capability": "build"},
        {"target_agent": "any", "required_capability": "test"},
    ]
    lows = [request(inbox, n, priority=RequestPriority.LOW, **targets[n % 3]) for n in range(6)]
    urgent = request(inbox, 99, priority=RequestPriority.URGENT, **targets[2])
    streams = [
        s
        for lane in lanes(
            requester.keys, [agent_target("cicd"), capability_target("build"), capability_target("test")]
        )
        for s in lane
    ]
    async with InboxReader(requester.client, inbox) as answers:
        for low in lows:
            await requester.send_request(low)
        first, second = (
            await next_execution(requester, redis_prefix),
            await next_execution(requester, redis_prefix),
        )
        assert {first["worker"], second["worker"]} == {"a", "b"}  # both replicas share the work
        # Each replica holds only the request it runs; the other four are left for whoever is free.
        held = [await requester.client.xpending(s, REQUEST_GROUP) for s in streams]
        assert sum(p["pending"] for p in held) == 2
        await requester.send_request(urgent)
        await requester.client.rpush(release_key(redis_prefix, first["worker"]), "go")
        third = await next_execution(requester, redis_prefix)
        assert third["request_id"] == urgent.request_id and third["worker"] == first["worker"]
        for name in ("a", "b"):
            await requester.client.rpush(release_key(redis_prefix, name), *["go"] * 7)
        for sent in [*lows, urgent]:
            await answers.wait_for(sent.request_id, seconds=30)
    for sent in [*lows, urgent]:
        [answer] = answers.answers[sent.request_id]
        assert answer.status is ResponseStatus.SUCCESS and answer.result is not None
        assert answer.result["echo"] == sent.payload
    ran = [first, second, third, *await executions(requester, redis_prefix)]
    assert sorted(e["payload"]["n"] for e in ran) == [0, 1, 2, 3, 4, 5, 99]  # each executed once


async def test_priority_order_in_a_consumer_process(
    redis_url: str, redis_prefix: str, requester: EventBus, workers: list[Worker]
) -> None:
    inbox = f"{requester.keys.root}:inbox:test:prio"
    order = [p for _ in range(3) for p in (RequestPriority.LOW, RequestPriority.NORMAL, RequestPriority.HIGH)]
    order += [RequestPriority.URGENT, RequestPriority.URGENT]
    sent = [request(inbox, n, priority=priority) for n, priority in enumerate(order)]
    for item in sent:  # a backlog before the consumer exists
        await requester.send_request(item)
    async with InboxReader(requester.client, inbox) as answers:
        args = worker_args(redis_url, redis_prefix, "w", "--concurrency", "1", "--record")
        workers.append(await Worker.start(*args))
        for item in sent:
            await answers.wait_for(item.request_id, seconds=30)
    expected = ["urgent"] * 2 + ["high"] * 3 + ["normal"] * 3 + ["low"] * 3
    assert [e["priority"] for e in await executions(requester, redis_prefix)] == expected


async def test_expired_request_is_not_executed_by_a_consumer_process(
    redis_url: str, redis_prefix: str, requester: EventBus, workers: list[Worker]
) -> None:
    inbox = f"{requester.keys.root}:inbox:test:expiry"
    stale = request(inbox, 1, created_at=utc_now() - timedelta(seconds=60), timeout_seconds=5)
    fresh = request(inbox, 2)
    await requester.send_request(stale)
    await requester.send_request(fresh)
    async with InboxReader(requester.client, inbox) as answers:
        workers.append(await Worker.start(*worker_args(redis_url, redis_prefix, "w", "--record")))
        expired = await answers.wait_for(stale.request_id)
        served = await answers.wait_for(fresh.request_id)
    assert expired.status is ResponseStatus.TIMEOUT and expired.error == "request expired before execution"
    assert served.status is ResponseStatus.SUCCESS
    assert [e["request_id"] for e in await executions(requester, redis_prefix)] == [fresh.request_id]


async def test_malformed_entries_are_dead_lettered_while_the_consumer_process_carries_on(
    redis_url: str, redis_prefix: str, requester: EventBus, workers: list[Worker]
) -> None:
    workers.append(await Worker.start(*worker_args(redis_url, redis_prefix, "w", "--concurrency", "1")))
    inbox = f"{requester.keys.root}:inbox:test:malformed"
    stream = requester.keys.request_stream(agent_target("cicd"), RequestPriority.NORMAL)
    # Recoverable reply address, invalid request: its requester must hear why instead of timing out.
    addressable = {
        "request_id": "r-1",
        "reply_to": inbox,
        "source_agent": "orchestrator",
        "target_agent": "cicd",
    }
    async with InboxReader(requester.client, inbox) as answers:
        await requester.client.xadd(stream, {DATA_FIELD: "{not json"})
        await requester.client.xadd(stream, {"other": "field"})
        await requester.client.xadd(stream, {DATA_FIELD: json.dumps(addressable)})
        response = await requester.request_agent(
            AgentRequestEvent(
                source_agent="orchestrator", target_agent="cicd", request_type="echo", payload={"n": 1}
            )
        )
        rejected = await answers.wait_for("r-1")
    assert response.status is ResponseStatus.SUCCESS and response.result == {"echo": {"n": 1}, "worker": "w"}
    assert rejected.status is ResponseStatus.ERROR and rejected.target_agent == "orchestrator"
    assert (
        rejected.error is not None
        and "malformed request" in rejected.error
        and "request_type" in rejected.error
    )
    dead = list(reversed(await requester.dead_letters()))
    assert [d["reason"] for d in dead] == ["malformed"] * 3
    assert "Invalid JSON" in dead[0]["error"] and "no 'data' field" in dead[1]["error"]
    assert await requester.client.xlen(stream) == 0


async def test_duplicate_is_answered_from_the_first_result_by_another_process(
    redis_url: str, redis_prefix: str, requester: EventBus, workers: list[Worker]
) -> None:
    inbox = f"{requester.keys.root}:inbox:test:dup"
    once = request(inbox, 5, target_agent="any", required_capability="deploy")
    extra = ["--capability", "deploy", "--non-idempotent", "--record"]
    async with InboxReader(requester.client, inbox) as answers:
        first_worker = await Worker.start(*worker_args(redis_url, redis_prefix, "first", *extra))
        workers.append(first_worker)
        await requester.send_request(once)
        first = await answers.wait_for(once.request_id)
        await first_worker.stop()
        workers.append(await Worker.start(*worker_args(redis_url, redis_prefix, "second", *extra)))
        await requester.send_request(once)  # delivered again, now to another process
        await answers.wait_for(once.request_id, count=2)
    second = answers.answers[once.request_id][1]
    assert first.status is ResponseStatus.SUCCESS and first.result == {"echo": {"n": 5}, "worker": "first"}
    assert second.response_id == first.response_id and second.result == first.result
    assert [e["worker"] for e in await executions(requester, redis_prefix)] == ["first"]
