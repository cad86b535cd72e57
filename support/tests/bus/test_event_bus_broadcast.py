"""Broadcast events: once per subscriber group, pattern filters, retried failures, outage errors."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY

from shared.bus import (
    ALL_RETAINED,
    DATA_FIELD,
    AgentRequestEvent,
    BusOptions,
    BusUnavailable,
    EventBus,
    InterAgentEvent,
    InterAgentEventType,
    RetryPolicy,
)
from shared.config import load_settings
from support.tests.bus.helpers import Collector, eventually, group_drained

pytestmark = pytest.mark.integration

FAST = BusOptions(claim_idle_ms=300, block_ms=200, subscriber_retry_ms=150)


@pytest.fixture
async def bus(redis_url: str, redis_prefix: str) -> AsyncIterator[EventBus]:
    async with EventBus(redis_url, redis_prefix, agent_id="registry", options=FAST) as instance:
        yield instance


def event(kind: InterAgentEventType, n: int) -> InterAgentEvent:
    return InterAgentEvent(event_type=kind, source_agent="registry", payload={"n": n})


async def test_each_group_receives_each_event_once(redis_url: str, redis_prefix: str, bus: EventBus) -> None:
    audit, workflow = Collector(), Collector()
    async with EventBus(redis_url, redis_prefix, agent_id="other", options=FAST) as other:
        await bus.subscribe("*", audit, group="audit")
        # Two members of one group (e.g. two orchestrator workers) share its events.
        await bus.subscribe("*", workflow.member("a"), group="workflow")
        await other.subscribe("*", workflow.member("b"), group="workflow")
        sent = [event(InterAgentEventType.TASK_COMPLETED, n) for n in range(20)]
        for item in sent:
            await bus.emit(item)
        await audit.wait_for(20)
        await workflow.wait_for(20)
        delivered = bus.stats().events_delivered + other.stats().events_delivered
    assert [e.event_id for e in audit.events] == [e.event_id for e in sent]
    assert sorted(e.event_id for e in workflow.events) == sorted(e.event_id for e in sent)
    assert set(workflow.members) <= {"a", "b"}
    assert bus.stats().events_emitted == 20 and delivered == 40


async def test_pattern_selects_event_types(bus: EventBus) -> None:
    agents = Collector()
    subscription = await bus.subscribe("agent.*", agents, group="dashboard")
    await bus.emit(event(InterAgentEventType.RESOURCE_LOCKED, 1))
    status = event(InterAgentEventType.AGENT_STATUS_CHANGE, 2)
    await bus.emit(status)
    await agents.wait_for(1)
    assert [e.event_id for e in agents.events] == [status.event_id]
    assert subscription.skipped == 1 and subscription.delivered == 1


async def test_new_group_starts_with_the_next_event_by_default(bus: EventBus) -> None:
    await bus.emit(event(InterAgentEventType.TASK_COMPLETED, 0))
    received = Collector()
    subscription = await bus.subscribe("*", received, group="late")
    later = event(InterAgentEventType.TASK_COMPLETED, 1)
    await bus.emit(later)
    await received.wait_for(1)
    # Delivery follows stream order: had event 0 been delivered, it would have come first.
    assert [e.event_id for e in received.events] == [later.event_id]
    assert subscription.start_id == "$"


async def test_new_group_can_start_from_the_oldest_retained_event(bus: EventBus) -> None:
    earlier = [event(InterAgentEventType.TASK_COMPLETED, n) for n in range(3)]
    for item in earlier:
        await bus.emit(item)
    received = Collector()
    await bus.subscribe("*", received, group="replay", start=ALL_RETAINED)
    await received.wait_for(3)
    assert [e.event_id for e in received.events] == [e.event_id for e in earlier]


async def test_existing_group_resumes_from_its_position_whatever_the_start(bus: EventBus) -> None:
    first, second = Collector(), Collector()
    subscription = await bus.subscribe("*", first, group="resume")
    handled = event(InterAgentEventType.TASK_COMPLETED, 0)
    await bus.emit(handled)
    await first.wait_for(1)
    # Acknowledged, so nothing of the first member's is left pending for the second to take over.
    await eventually(lambda: group_drained(bus, "resume"), what="event 0 acknowledged")
    await subscription.stop()
    await bus.subscribe("*", second, group="resume", start=ALL_RETAINED)
    following = event(InterAgentEventType.TASK_COMPLETED, 1)
    await bus.emit(following)
    await second.wait_for(1)
    assert [e.event_id for e in second.events] == [following.event_id]


async def test_subscribe_rejects_a_bad_start(bus: EventBus) -> None:
    with pytest.raises(ValueError, match="start: expected"):
        await bus.subscribe("*", Collector(), group="g", start="beginning")


async def test_failing_handler_is_counted_retried_and_listener_survives(bus: EventBus) -> None:
    received = Collector()
    failures: list[int] = []

    async def flaky(item: InterAgentEvent) -> None:
        if item.payload["n"] == 0 and len(failures) < 2:
            failures.append(0)
            raise RuntimeError("downstream unavailable")
        await received(item)

    before = REGISTRY.get_sample_value("devtools_bus_subscriber_errors_total", {"group": "notifier"}) or 0.0
    subscription = await bus.subscribe("*", flaky, group="notifier")
    for n in range(3):
        await bus.emit(event(InterAgentEventType.APPROVAL_REQUIRED, n))
    await received.wait_for(3)
    # Later events were not held up by the failing one, which arrived after two retries.
    assert [e.payload["n"] for e in received.events] == [1, 2, 0]
    assert subscription.errors == 2 and bus.stats().subscriber_errors == 2
    after = REGISTRY.get_sample_value("devtools_bus_subscriber_errors_total", {"group": "notifier"})
    assert after == before + 2


async def test_handler_failing_every_time_is_dead_lettered(redis_url: str, redis_prefix: str) -> None:
    options = BusOptions(block_ms=100, subscriber_retry_ms=100, max_deliveries=2)
    received = Collector()

    async def poisoned(item: InterAgentEvent) -> None:
        if item.payload["n"] == 0:
            raise ValueError("cannot handle")
        await received(item)

    async with EventBus(redis_url, redis_prefix, agent_id="x", options=options) as bus:
        subscription = await bus.subscribe("*", poisoned, group="g")
        await bus.emit(event(InterAgentEventType.AGENT_ERROR, 0))
        await bus.emit(event(InterAgentEventType.AGENT_ERROR, 1))
        await received.wait_for(1)
        async with asyncio.timeout(15):  # the dead-letter stream is itself the event to wait for
            await bus.client.xread({bus.keys.dead_letters: "0-0"}, block=15_000)
        dead = await bus.dead_letters()
    assert subscription.errors == 2
    assert dead[0]["reason"] == "max_deliveries" and dead[0]["group"] == "g"


async def test_malformed_event_is_dead_lettered(bus: EventBus) -> None:
    received = Collector()
    await bus.subscribe("*", received, group="g")
    await bus.client.xadd(
        bus.keys.events, {DATA_FIELD: '{"event_type": "no.such.type", "source_agent": "x"}'}
    )
    good = event(InterAgentEventType.WORKFLOW_CHECKPOINT, 1)
    await bus.emit(good)
    await received.wait_for(1)
    dead = await bus.dead_letters()
    assert [e.event_id for e in received.events] == [good.event_id]
    assert dead[0]["reason"] == "malformed" and "event_type" in dead[0]["error"]


async def test_events_stream_is_trimmed_by_length(redis_url: str, redis_prefix: str) -> None:
    options = BusOptions(events_maxlen=10)
    async with EventBus(redis_url, redis_prefix, options=options) as bus:
        for n in range(300):
            await bus.emit(event(InterAgentEventType.TASK_DELEGATED, n))
        length = await bus.client.xlen(bus.keys.events)
    assert length < 300  # approximate trimming (MAXLEN ~) keeps whole macro-nodes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_publishing_without_redis_raises_bus_unavailable(redis_prefix: str) -> None:
    options = BusOptions(retry=RetryPolicy(attempts=3, first_delay=0.01))
    bus = EventBus(f"redis://127.0.0.1:{free_port()}/0", redis_prefix, options=options)
    try:
        with pytest.raises(BusUnavailable, match="emit after 3 attempts"):
            await bus.emit(event(InterAgentEventType.TASK_FAILED, 1))
        with pytest.raises(BusUnavailable, match="connect"):
            await bus.request_agent(
                AgentRequestEvent(source_agent="a", target_agent="b", request_type="t"), timeout=1
            )
    finally:
        await bus.close()


async def test_from_settings_uses_the_configured_prefix(redis_url: str, redis_prefix: str) -> None:
    settings = load_settings(redis_url=redis_url, redis_prefix=redis_prefix)
    async with EventBus.from_settings(settings, agent_id="registry") as bus:
        await bus.emit(event(InterAgentEventType.AGENT_STATUS_CHANGE, 1))
        assert bus.keys.events == f"{redis_prefix}:bus:events"
        assert await bus.client.xlen(f"{redis_prefix}:bus:events") == 1
