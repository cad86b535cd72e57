"""Requests that could otherwise wait out their whole timeout for nothing, on the real Redis: one no
live consumer serves (answered `rejected` at once), and one Redis lost (sent again, same id)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from shared.bus import (
    AgentRequestEvent,
    EventBus,
    RequestPriority,
    ResponseStatus,
    agent_target,
    capability_target,
)
from support.tests.bus.helpers import FAST, eventually

pytestmark = pytest.mark.integration

# A short grace and audit so that both happen within a test; the timeouts stay long, so an answer
# that came from waiting them out would fail the test's own deadline instead.
OPTIONS = dataclasses.replace(FAST, presence_grace_seconds=0.5, audit_interval_seconds=0.2)


def request(target: str = "cicd", **overrides: Any) -> AgentRequestEvent:
    fields: dict[str, Any] = {
        "source_agent": "orchestrator",
        "target_agent": target,
        "request_type": "run",
        "payload": {},
        "timeout_seconds": 120,
    }
    fields.update(overrides)
    return AgentRequestEvent(**fields)


@pytest.fixture
async def requester(redis_url: str, redis_prefix: str) -> AsyncIterator[EventBus]:
    async with EventBus(redis_url, redis_prefix, agent_id="orchestrator", options=OPTIONS) as bus:
        yield bus


@pytest.fixture
async def agent(redis_url: str, redis_prefix: str) -> AsyncIterator[EventBus]:
    async with EventBus(redis_url, redis_prefix, agent_id="cicd", options=OPTIONS) as bus:
        yield bus


def _unroutable() -> float:
    return REGISTRY.get_sample_value("devtools_bus_requests_unroutable_total", {"agent": "orchestrator"}) or 0


async def test_a_request_nobody_serves_is_rejected_after_the_grace_not_the_timeout(
    requester: EventBus,
) -> None:
    before = _unroutable()
    async with asyncio.timeout(30):
        by_agent = await requester.request_agent(request("nobody"))
        by_capability = await requester.request_agent(request("any", required_capability="quantum-computing"))

    assert (by_agent.status, by_agent.error_code) == (ResponseStatus.REJECTED, "no_live_agent")
    assert by_agent.error == "no live agent serves agent nobody (none seen alive within 0.5s)"
    assert by_capability.status is ResponseStatus.REJECTED
    assert "capability quantum-computing" in (by_capability.error or "")
    assert _unroutable() == before + 2
    # Withdrawn: an agent that starts later does not run work nobody waits for.
    for target in (agent_target("nobody"), capability_target("quantum-computing")):
        assert await requester.client.xlen(requester.keys.request_stream(target, RequestPriority.NORMAL)) == 0


async def test_an_agent_that_starts_within_the_grace_gets_the_request(
    requester: EventBus, agent: EventBus
) -> None:
    pending = asyncio.create_task(requester.request_agent(request()))
    stream = requester.keys.request_stream(agent_target("cicd"), RequestPriority.NORMAL)
    await eventually(lambda: requester.client.xlen(stream), what="the request queued")

    async def handler(event: AgentRequestEvent) -> dict[str, Any]:
        return {"served": event.request_id}

    await agent.serve_requests("cicd", [], handler)
    async with asyncio.timeout(30):
        response = await pending
    assert response.status is ResponseStatus.SUCCESS
    assert response.result == {"served": response.request_id}


async def test_a_request_redis_lost_is_sent_again_with_the_same_id(
    requester: EventBus, agent: EventBus
) -> None:
    release, running, resent_once = asyncio.Event(), asyncio.Event(), asyncio.Event()
    started: list[str] = []
    resent: list[str] = []

    async def handler(event: AgentRequestEvent) -> dict[str, Any]:
        started.append(event.payload["name"])
        if event.payload["name"] == "first":
            running.set()
            await release.wait()
        return {"name": event.payload["name"]}

    async def on_resend(request_id: str) -> None:
        resent.append(request_id)
        resent_once.set()

    # Not idempotent: a request sent again is answered from its first execution, never run twice.
    await agent.serve_requests("cicd", [], handler, concurrency=1, idempotent=False)
    first = asyncio.create_task(requester.request_agent(request(payload={"name": "first"})))
    async with asyncio.timeout(20):
        await running.wait()

    queued = request(payload={"name": "queued"})
    second = asyncio.create_task(requester.request_agent(queued, on_resend=on_resend))
    stream = requester.keys.request_stream(agent_target("cicd"), RequestPriority.NORMAL)
    await eventually(lambda: _holds(requester, stream, 2), what="the second request queued behind the first")

    # What a Redis restart without persistence does: both the running and the queued entry are gone.
    await requester.client.delete(stream)
    async with asyncio.timeout(20):
        await resent_once.wait()
    release.set()
    async with asyncio.timeout(30):
        answered = await second
        await first

    assert answered.status is ResponseStatus.SUCCESS and answered.result == {"name": "queued"}
    assert started == ["first", "queued"]  # each served once: the first's copy got its stored answer
    assert resent == [queued.request_id]
    assert requester.stats().requests_resent == 2


async def _holds(bus: EventBus, stream: str, count: int) -> bool:
    return bool(await bus.client.xlen(stream) == count)
