"""Bus requests on the real Redis: routing, timeouts, expiry, priority, duplicates, dead letters."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from shared.bus import (
    DATA_FIELD,
    REQUEST_GROUP,
    AgentRequestEvent,
    AgentResponseEvent,
    BusOptions,
    EventBus,
    RequestPriority,
    ResponseStatus,
    agent_target,
    utc_now,
)
from support.tests.bus.helpers import FAST, eventually

pytestmark = pytest.mark.integration


def request(**overrides: Any) -> AgentRequestEvent:
    fields: dict[str, Any] = {
        "source_agent": "orchestrator",
        "target_agent": "code-review",
        "request_type": "review",
        "payload": {"n": 1},
        "timeout_seconds": 10,
    }
    fields.update(overrides)
    return AgentRequestEvent(**fields)


async def read_inbox(bus: EventBus, inbox: str, count: int) -> list[AgentResponseEvent]:
    """Wait for `count` responses on an inbox stream the test reads itself."""
    responses: list[AgentResponseEvent] = []
    last = "0-0"
    async with asyncio.timeout(20):
        while len(responses) < count:
            for _stream, entries in await bus.client.xread({inbox: last}, block=1000):
                for entry_id, fields in entries:
                    last = entry_id
                    responses.append(AgentResponseEvent.from_json(fields[DATA_FIELD]))
    return responses


def metric(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_request_is_answered_by_agent_id_and_by_capability(
    requester: EventBus, server: EventBus
) -> None:
    async def handler(req: AgentRequestEvent) -> dict[str, Any]:
        return {"doubled": req.payload["n"] * 2, "type": req.request_type}

    await server.serve_requests("code-review", ["review", "lint"], handler)
    by_id = await requester.request_agent(request(payload={"n": 21}))
    by_capability = await requester.request_agent(
        request(target_agent="any", required_capability="lint", request_type="lint", payload={"n": 5})
    )
    assert by_id.status is ResponseStatus.SUCCESS and by_id.result == {"doubled": 42, "type": "review"}
    assert by_id.source_agent == "code-review" and by_id.target_agent == "orchestrator"
    assert by_capability.status is ResponseStatus.SUCCESS and by_capability.result == {
        "doubled": 10,
        "type": "lint",
    }
    stats = requester.stats()
    assert (stats.requests_sent, stats.responses_received, stats.active_requests) == (2, 2, 0)


async def test_handler_exception_becomes_error_response(requester: EventBus, server: EventBus) -> None:
    async def handler(req: AgentRequestEvent) -> dict[str, Any]:
        raise RuntimeError("diff too large")

    await server.serve_requests("code-review", [], handler)
    response = await requester.request_agent(request())
    assert response.status is ResponseStatus.ERROR
    assert response.error == "RuntimeError: diff too large"


async def test_handler_may_return_a_full_response(requester: EventBus, server: EventBus) -> None:
    async def handler(req: AgentRequestEvent) -> AgentResponseEvent:
        # A handler that fills in the wrong ids still answers the request it was given.
        return AgentResponseEvent(
            request_id="wrong", source_agent="code-review", target_agent="wrong",
            status=ResponseStatus.PARTIAL, result={"done": 3, "of": 5},
        )  # fmt: skip

    await server.serve_requests("code-review", [], handler)
    sent = request()
    response = await requester.request_agent(sent)
    assert response.status is ResponseStatus.PARTIAL and response.result == {"done": 3, "of": 5}
    assert response.request_id == sent.request_id and response.target_agent == "orchestrator"


async def test_no_consumer_gives_timeout_response(requester: EventBus) -> None:
    before = metric("devtools_bus_request_timeouts_total", {"agent": "orchestrator"})
    response = await requester.request_agent(request(target_agent="nobody-home"), timeout=0.3)
    assert response.status is ResponseStatus.TIMEOUT
    assert "nobody-home" in (response.error or "")
    assert requester.stats().request_timeouts == 1
    assert metric("devtools_bus_request_timeouts_total", {"agent": "orchestrator"}) == before + 1


async def test_expired_request_is_not_executed(requester: EventBus, server: EventBus) -> None:
    calls: list[str] = []

    async def handler(req: AgentRequestEvent) -> dict[str, Any]:
        calls.append(req.request_id)
        return {}

    inbox = f"{requester.keys.root}:inbox:test:expiry"
    stale = request(created_at=utc_now() - timedelta(seconds=60), timeout_seconds=5, reply_to=inbox)
    fresh = request(reply_to=inbox)
    await requester.send_request(stale)
    await requester.send_request(fresh)
    await server.serve_requests("code-review", [], handler, concurrency=1)
    responses = {r.request_id: r for r in await read_inbox(requester, inbox, 2)}
    assert responses[stale.request_id].status is ResponseStatus.TIMEOUT
    assert responses[stale.request_id].error == "request expired before execution"
    assert responses[fresh.request_id].status is ResponseStatus.SUCCESS
    assert calls == [fresh.request_id]


async def test_handler_running_past_expiry_answers_timeout(requester: EventBus, server: EventBus) -> None:
    async def handler(req: AgentRequestEvent) -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}

    inbox = f"{requester.keys.root}:inbox:test:slow"
    slow = request(timeout_seconds=0.3, reply_to=inbox)
    await requester.send_request(slow)
    await server.serve_requests("code-review", [], handler)
    [response] = await read_inbox(requester, inbox, 1)
    assert response.status is ResponseStatus.TIMEOUT
    assert response.error == "handler ran past expires_at"


async def test_urgent_and_high_are_served_before_normal_and_low(
    requester: EventBus, server: EventBus
) -> None:
    order: list[RequestPriority] = []
    done = asyncio.Event()
    inbox = f"{requester.keys.root}:inbox:test:prio"
    sent = [p for _ in range(3) for p in (RequestPriority.LOW, RequestPriority.NORMAL, RequestPriority.HIGH)]
    sent += [RequestPriority.URGENT, RequestPriority.URGENT]
    for priority in sent:
        await requester.send_request(request(priority=priority, reply_to=inbox))

    async def handler(req: AgentRequestEvent) -> dict[str, Any]:
        order.append(req.priority)
        if len(order) == len(sent):
            done.set()
        return {}

    await server.serve_requests("code-review", [], handler, concurrency=1)
    async with asyncio.timeout(20):
        await done.wait()
    expected = [RequestPriority.URGENT] * 2 + [RequestPriority.HIGH] * 3
    expected += [RequestPriority.NORMAL] * 3 + [RequestPriority.LOW] * 3
    assert order == expected


@pytest.mark.parametrize("idempotent", [False, True])
async def test_duplicate_delivery(requester: EventBus, server: EventBus, idempotent: bool) -> None:
    executions: list[str] = []

    async def handler(req: AgentRequestEvent) -> dict[str, Any]:
        executions.append(req.request_id)
        return {"execution": len(executions)}

    inbox = f"{requester.keys.root}:inbox:test:dup"
    once = request(reply_to=inbox)
    await requester.send_request(once)
    await requester.send_request(once)  # the same request on the stream twice
    await server.serve_requests("code-review", [], handler, concurrency=2, idempotent=idempotent)
    first, second = await read_inbox(requester, inbox, 2)
    assert first.request_id == second.request_id == once.request_id
    if idempotent:
        assert len(executions) == 2
    else:
        assert len(executions) == 1
        assert first.response_id == second.response_id and second.result == {"execution": 1}


async def test_abandoned_request_is_reclaimed_by_another_replica(
    redis_url: str, redis_prefix: str, requester: EventBus
) -> None:
    started = asyncio.Event()

    async def stuck(req: AgentRequestEvent) -> dict[str, Any]:
        started.set()
        await asyncio.Event().wait()
        return {}

    async def healthy(req: AgentRequestEvent) -> dict[str, Any]:
        return {"by": "replica-b"}

    async with (
        EventBus(redis_url, redis_prefix, agent_id="code-review", options=FAST) as replica_a,
        EventBus(redis_url, redis_prefix, agent_id="code-review", options=FAST) as replica_b,
    ):
        consumer_a = await replica_a.serve_requests("code-review", [], stuck, consumer_name="a")
        pending = asyncio.create_task(requester.request_agent(request()))
        async with asyncio.timeout(10):
            await started.wait()
        await consumer_a.stop(drain=False)  # as if the process died: the entry stays pending
        consumer_b = await replica_b.serve_requests("code-review", [], healthy, consumer_name="b")
        response = await pending
    assert response.status is ResponseStatus.SUCCESS and response.result == {"by": "replica-b"}
    assert consumer_b.redeliveries == 1


async def test_request_dead_lettered_after_max_deliveries(
    redis_url: str, redis_prefix: str, requester: EventBus
) -> None:
    options = BusOptions(claim_idle_ms=300, block_ms=200, max_deliveries=1)
    started = asyncio.Event()

    async def stuck(req: AgentRequestEvent) -> dict[str, Any]:
        started.set()
        await asyncio.Event().wait()
        return {}

    before = metric("devtools_bus_dead_letters_total", {"reason": "max_deliveries"})
    async with (
        EventBus(redis_url, redis_prefix, agent_id="code-review", options=options) as replica_a,
        EventBus(redis_url, redis_prefix, agent_id="code-review", options=options) as replica_b,
    ):
        consumer_a = await replica_a.serve_requests("code-review", [], stuck)
        pending = asyncio.create_task(requester.request_agent(request()))
        async with asyncio.timeout(10):
            await started.wait()
        await consumer_a.stop(drain=False)
        await replica_b.serve_requests("code-review", [], stuck)
        response = await pending
        dead = await replica_b.dead_letters()
    assert response.status is ResponseStatus.ERROR
    assert "dead-lettered after 1 deliveries" in (response.error or "")
    assert [d["reason"] for d in dead] == ["max_deliveries"]
    assert metric("devtools_bus_dead_letters_total", {"reason": "max_deliveries"}) == before + 1


async def test_malformed_entries_are_dead_lettered_and_consumer_carries_on(
    requester: EventBus, server: EventBus
) -> None:
    async def handler(req: AgentRequestEvent) -> dict[str, Any]:
        return {"ok": True}

    stream = requester.keys.request_stream(agent_target("code-review"), RequestPriority.NORMAL)
    await requester.client.xadd(stream, {DATA_FIELD: "{not json"})
    await requester.client.xadd(stream, {DATA_FIELD: '{"source_agent": "x", "target_agent": "code-review"}'})
    await requester.client.xadd(stream, {"other": "field"})
    await server.serve_requests("code-review", [], handler, concurrency=1)
    response = await requester.request_agent(request())
    assert response.status is ResponseStatus.SUCCESS
    dead = list(reversed(await requester.dead_letters()))
    assert [d["reason"] for d in dead] == ["malformed"] * 3
    assert "Invalid JSON" in dead[0]["error"]
    assert "request_type" in dead[1]["error"]
    assert "no 'data' field" in dead[2]["error"]
    assert dead[0]["data"] == "{not json" and dead[0]["stream"] == stream
    # Nothing is left pending or on the stream: the bad entries were acknowledged and removed.
    assert await requester.client.xlen(stream) == 0
    assert (await requester.client.xpending(stream, REQUEST_GROUP))["pending"] == 0


async def test_busy_is_reported_when_every_slot_runs(requester: EventBus, server: EventBus) -> None:
    transitions: list[bool] = []
    release = asyncio.Event()
    running = asyncio.Event()
    freed = asyncio.Event()

    def on_full(full: bool) -> None:
        transitions.append(full)
        if not full:
            freed.set()

    async def handler(req: AgentRequestEvent) -> dict[str, Any]:
        running.set()
        await release.wait()
        return {}

    consumer = await server.serve_requests("code-review", [], handler, concurrency=1, on_full=on_full)
    pending = asyncio.create_task(requester.request_agent(request()))
    async with asyncio.timeout(10):
        await running.wait()
    assert consumer.is_full and consumer.active == 1 and transitions == [True]
    release.set()
    assert (await pending).status is ResponseStatus.SUCCESS
    async with asyncio.timeout(10):
        await freed.wait()
    assert transitions == [True, False] and consumer.active == 0


async def test_stop_with_drain_finishes_running_requests(requester: EventBus, server: EventBus) -> None:
    release = asyncio.Event()
    running: list[str] = []
    both_running = asyncio.Event()

    async def handler(req: AgentRequestEvent) -> dict[str, Any]:
        running.append(req.request_id)
        if len(running) == 2:
            both_running.set()
        await release.wait()
        return {"finished": True}

    consumer = await server.serve_requests("code-review", [], handler, concurrency=2)
    pending = [asyncio.create_task(requester.request_agent(request())) for _ in range(2)]
    async with asyncio.timeout(10):
        await both_running.wait()
    stopping = asyncio.create_task(consumer.stop(drain=True))
    await asyncio.sleep(0)  # let stop() begin: it must wait for the two handlers
    assert not stopping.done()
    release.set()
    await stopping
    assert consumer.active == 0
    assert [(await p).result for p in pending] == [{"finished": True}] * 2


async def test_latency_histogram_starts_at_one_millisecond(requester: EventBus, server: EventBus) -> None:
    async def handler(req: AgentRequestEvent) -> dict[str, Any]:
        return {}

    await server.serve_requests("code-review", [], handler)
    labels = {"agent": "orchestrator", "status": "success"}
    before = metric("devtools_bus_request_latency_seconds_count", labels)
    await requester.request_agent(request())
    assert metric("devtools_bus_request_latency_seconds_count", labels) == before + 1
    assert (
        REGISTRY.get_sample_value("devtools_bus_request_latency_seconds_bucket", {**labels, "le": "0.001"})
        is not None
    )


def test_any_target_requires_capability() -> None:
    with pytest.raises(ValueError, match="required_capability"):
        request(target_agent="any")
    with pytest.raises(ValueError, match="timeout_seconds"):
        request(timeout_seconds=0)


async def test_reply_to_outside_the_bus_inboxes_is_never_written(
    requester: EventBus, server: EventBus
) -> None:
    executions: list[str] = []

    async def handler(req: AgentRequestEvent) -> dict[str, Any]:
        executions.append(req.request_id)
        return {"ok": True}

    victim = f"{requester.keys.root}:victim"
    await requester.client.set(victim, "precious")  # a plain key: XADD to it would fail (WRONGTYPE)
    await requester.send_request(request(reply_to=victim))
    await server.serve_requests("code-review", [], handler)
    stream = requester.keys.request_stream(agent_target("code-review"), RequestPriority.NORMAL)

    async def handled() -> bool:
        groups = await requester.client.xinfo_groups(stream)
        return bool(executions) and all(int(g["pending"]) == 0 for g in groups)

    await eventually(handled, what="the request handled and acknowledged")
    assert len(executions) == 1  # executed once, not redelivered after a failed reply
    assert await requester.client.xlen(requester.keys.dead_letters) == 0
    assert await requester.client.get(victim) == "precious"
