"""Bus failure injection across processes: a SIGKILLed consumer, Redis killed and restarted mid-traffic."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from shared.bus import (
    DATA_FIELD,
    AgentRequestEvent,
    AgentResponseEvent,
    BusOptions,
    BusUnavailable,
    EventBus,
    InterAgentEvent,
    InterAgentEventType,
    ResponseStatus,
)
from support.tests.bus.consumer_process import Worker
from support.tests.bus.helpers import Collector, InboxReader, eventually, group_drained
from support.tests.chaos.private_redis import PrivateRedis

pytestmark = pytest.mark.chaos


@pytest.fixture
async def workers() -> AsyncIterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        await worker.stop()


def request(n: int, timeout: float = 30) -> AgentRequestEvent:
    return AgentRequestEvent(
        source_agent="orchestrator", target_agent="cicd", request_type="echo", payload={"n": n},
        timeout_seconds=timeout,
    )  # fmt: skip


async def test_sigkilled_consumer_request_is_answered_once_by_another_replica(
    redis_url: str, redis_prefix: str, workers: list[Worker]
) -> None:
    common = ["--redis-url", redis_url, "--prefix", redis_prefix, "--agent", "cicd", "--mode", "hold-first"]
    common += ["--claim-idle-ms", "600"]
    workers.append(await Worker.start(*common, "--name", "replica-a"))
    async with EventBus(redis_url, redis_prefix, agent_id="orchestrator") as bus:
        pending = asyncio.create_task(bus.request_agent(request(7)))
        # The hanging replica announces that it is executing the request.
        _key, executing = await bus.client.blpop([f"{redis_prefix}:test:started"], timeout=20)
        assert executing == "replica-a"
        await workers[0].kill()  # SIGKILL mid-request: no response, no acknowledgement
        workers.append(await Worker.start(*common, "--name", "replica-b"))
        response = await pending
        answers = await bus.client.xrange(bus.inbox)
    assert response.status is ResponseStatus.SUCCESS
    assert response.result == {"echo": {"n": 7}, "worker": "replica-b"}
    # Exactly one answer reached the requester's inbox: the killed replica never answered.
    assert [AgentResponseEvent.from_json(f[DATA_FIELD]).request_id for _i, f in answers] == [
        response.request_id
    ]


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.kill()


async def test_redis_killed_and_restarted_mid_traffic_loses_no_accepted_request(
    private_redis: PrivateRedis, workers: list[Worker]
) -> None:
    prefix = "chaos"
    args = ["--redis-url", private_redis.url, "--prefix", prefix, "--agent", "cicd", "--concurrency", "8"]
    # Each request takes 20 ms, so some are executing when Redis dies and their answers must wait.
    args += ["--claim-idle-ms", "1000", "--delay-ms", "20"]
    workers.append(await Worker.start(*args, "--name", "worker-1"))
    total, answered_before_outage, events_per_phase = 120, 30, 40
    groups = ("audit", "dashboard")
    # n -> "before"/"after": when send_request returned, i.e. when Redis had accepted the request.
    accepted: dict[int, str] = {}
    refused: set[int] = set()
    killed = False
    answered = asyncio.Event()
    async with (
        EventBus(private_redis.url, prefix, agent_id="orchestrator", options=BusOptions()) as bus,
        InboxReader(bus.client, f"{bus.keys.root}:inbox:test:chaos") as inbox,
    ):
        received = {group: Collector() for group in groups}
        for group in groups:
            await bus.subscribe("*", received[group], group=group)
        gate = asyncio.Semaphore(10)
        sent = [request(n).model_copy(update={"reply_to": inbox.stream}) for n in range(total)]

        async def one(n: int) -> None:
            async with gate:
                try:
                    await bus.send_request(sent[n])
                except BusUnavailable:  # not accepted: allowed, but must be loud
                    refused.add(n)
                    return
                accepted[n] = "after" if killed else "before"
                await inbox.wait_for(sent[n].request_id, seconds=90)
                if sum(inbox.answered(r.request_id) for r in sent) >= answered_before_outage:
                    answered.set()

        traffic = asyncio.gather(*(one(n) for n in range(total)))
        async with asyncio.timeout(30):
            await answered.wait()
        in_flight_at_kill = {n for n, when in accepted.items() if not inbox.answered(sent[n].request_id)}
        # Emitted just before the kill, so the subscribers are still at them; every emit returns
        # before it, though: none is in flight, so none can be written twice.
        emitted = await emit_events(bus, range(events_per_phase))
        killed = True
        private_redis.kill()
        private_redis.start()  # same port, same AOF
        emitted += await emit_events(bus, range(events_per_phase, 2 * events_per_phase))
        async with asyncio.timeout(90):
            await traffic
        for group in groups:
            await received[group].wait_for(len(emitted), seconds=30)
            # Nothing left pending: no redelivery can still add a duplicate after the count below.
            await eventually(lambda g=group: group_drained(bus, g), seconds=30, what=f"group {group} acked")
    before = [n for n, when in accepted.items() if when == "before"]
    assert in_flight_at_kill and len(accepted) + len(refused) == total
    assert len(before) >= answered_before_outage
    for n, when in accepted.items():
        answers = inbox.answers[sent[n].request_id]
        assert all(a.status is ResponseStatus.SUCCESS for a in answers), (n, [a.error for a in answers])
        assert answers[0].result == {"echo": {"n": n}, "worker": "worker-1"}
        if when == "before":
            # One answer, though it may be written twice when Redis died between writing it and replying.
            assert {a.response_id for a in answers} == {answers[0].response_id}, n
    for group in groups:
        assert sorted(e.payload["n"] for e in received[group].events) == emitted, group


def event(n: int) -> InterAgentEvent:
    return InterAgentEvent(
        event_type=InterAgentEventType.WORKFLOW_CHECKPOINT, source_agent="chaos", payload={"n": n}
    )


async def emit_events(bus: EventBus, numbers: range) -> list[int]:
    for n in numbers:
        await bus.emit(event(n))
    return list(numbers)


async def test_event_whose_ack_was_lost_in_an_outage_is_not_handled_again(
    private_redis: PrivateRedis,
) -> None:
    options = BusOptions(block_ms=100, subscriber_retry_ms=100)
    received = Collector()
    handled_first = asyncio.Event()

    async def handler(item: InterAgentEvent) -> None:
        await received(item)
        if item.payload["n"] == 0 and not handled_first.is_set():
            private_redis.kill()  # handled, and Redis dies before the acknowledgement is sent
            handled_first.set()

    reconnects = {"kind": "subscriber"}
    before = REGISTRY.get_sample_value("devtools_bus_listener_reconnects_total", reconnects) or 0.0
    async with EventBus(private_redis.url, "chaos", agent_id="audit", options=options) as bus:
        await bus.subscribe("*", handler, group="audit")
        await bus.emit(event(0))
        async with asyncio.timeout(15):
            await handled_first.wait()

        async def ack_failed() -> bool:  # the listener hit the dead Redis while acknowledging
            return (
                REGISTRY.get_sample_value("devtools_bus_listener_reconnects_total", reconnects) or 0
            ) > before

        await eventually(ack_failed, what="the subscriber to lose Redis")
        private_redis.start()
        await bus.emit(event(1))
        await received.wait_for(2)
        # The unacknowledged event comes back after subscriber_retry_ms; it must be acked, not handled.
        await eventually(lambda: group_drained(bus, "audit"), what="event 0 acknowledged")
    assert sorted(e.payload["n"] for e in received.events) == [0, 1]
