"""The registry client and the registry's bus events, against a real registry process and Redis.

Synchronisation is on the registry's own `agent.status_change` events, seen by a real subscriber.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from shared.agents import AgentRegistration, RegistryClient
from shared.bus import EventBus, InterAgentEvent
from support.tests.agents.processes import ADMIN_AUTH, PLATFORM_TOKEN, ServiceProcess, registry_record

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {PLATFORM_TOKEN}"}
# Only a failure waits this long: every wait below ends with an event that the test caused.
EVENT_DEADLINE_S = 30


def _id(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


class RegistryEventLog:
    """Every registry lifecycle event seen by one real bus subscriber, awaitable by content."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()

    async def handle(self, event: InterAgentEvent) -> None:
        async with self._changed:
            self.payloads.append(dict(event.payload))
            self._changed.notify_all()

    def of(self, agent_id: str, change: str | None = None) -> list[dict[str, Any]]:
        return [
            p
            for p in self.payloads
            if p["agent_id"] == agent_id and (change is None or p["change"] == change)
        ]

    async def wait_for(self, agent_id: str, change: str, count: int = 1) -> list[dict[str, Any]]:
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: len(self.of(agent_id, change)) >= count), EVENT_DEADLINE_S
            )
        return self.of(agent_id, change)


@pytest.fixture
async def events(
    registry: ServiceProcess, redis_url: str, module_prefix: str
) -> AsyncIterator[RegistryEventLog]:
    log = RegistryEventLog()
    async with EventBus(redis_url, module_prefix, agent_id="tests") as bus:
        await bus.subscribe("agent.status_change", log.handle, group=_id("registry-events"))
        yield log


@pytest.fixture
async def client(registry: ServiceProcess) -> AsyncIterator[RegistryClient]:
    client = RegistryClient(registry.url, platform_token=PLATFORM_TOKEN, cache_ttl=3600)
    yield client
    await client.close()


def _registration(agent_id: str, caps: list[str], **extra: Any) -> AgentRegistration:
    return AgentRegistration(
        agent_id=agent_id,
        agent_name=agent_id,
        base_url=f"http://127.0.0.1:1/{agent_id}",
        capabilities=list(caps),
        **extra,
    )


async def _register(registry: ServiceProcess, agent_id: str, caps: list[str]) -> str:
    async with httpx.AsyncClient() as http:
        body = _registration(agent_id, caps, heartbeat_interval_seconds=3600).body()
        response = await http.post(f"{registry.url}/register", json=body, headers=AUTH)
    assert response.status_code in (200, 201), response.text
    return str(response.json()["token"])


async def _delete(registry: ServiceProcess, agent_id: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.delete(f"{registry.url}/agents/{agent_id}", headers=ADMIN_AUTH)
    assert response.status_code == 200, response.text


async def test_heartbeat_loop_reregisters_when_the_registry_forgot_the_agent(
    registry: ServiceProcess, client: RegistryClient, events: RegistryEventLog
) -> None:
    agent_id = _id("phoenix")
    await client.register(_registration(agent_id, ["rising"], heartbeat_interval_seconds=0.2))
    first_token = client.agent_token
    await events.wait_for(agent_id, "registered")
    # The loop asks for the status at the start of each beat, so after the previous beat finished.
    seen_registrations: asyncio.Queue[int] = asyncio.Queue()

    def status() -> tuple[str, int]:
        seen_registrations.put_nowait(client.registrations)
        return "idle", 0

    client.start_heartbeats(status)
    await _delete(registry, agent_id)
    await events.wait_for(agent_id, "deregistered")
    # Only this client's heartbeat loop can bring the record back: it got a 404 and re-registered.
    again = (await events.wait_for(agent_id, "registered", count=2))[1]
    assert again["created"] is True
    while await asyncio.wait_for(seen_registrations.get(), EVENT_DEADLINE_S) < 2:
        pass
    assert client.registrations == 2 and client.agent_token != first_token
    record = registry_record(registry, agent_id)
    assert record is not None and record["status"] == "idle" and record["capabilities"][0]["name"] == "rising"

    # The registry now accepts only the new token for this agent.
    async with httpx.AsyncClient() as http:
        url = f"{registry.url}/agents/{agent_id}/heartbeat"
        stale = await http.post(url, json={}, headers={"Authorization": f"Bearer {first_token}"})
        assert stale.status_code == 401
    assert await client.deregister() is True
    await events.wait_for(agent_id, "deregistered", count=2)
    assert registry_record(registry, agent_id) is None


async def test_an_agent_whose_record_was_taken_over_takes_it_back(
    registry: ServiceProcess, client: RegistryClient, events: RegistryEventLog
) -> None:
    agent_id = _id("owned")
    registration = _registration(agent_id, ["owning"], heartbeat_interval_seconds=0.2)
    await client.register(registration)
    await events.wait_for(agent_id, "registered")
    beats: asyncio.Queue[bool] = asyncio.Queue()

    def status() -> tuple[str, int]:
        beats.put_nowait(client.accepted)
        return "idle", 0

    client.start_heartbeats(status)
    # Someone with the platform token re-registers the record (same address): the agent's token stops
    # opening it, so its next heartbeat is refused (401), and it registers again, taking it back.
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{registry.url}/register", json=registration.body(), headers=AUTH)
    assert response.status_code == 200
    intruder = response.json()["token"]
    await events.wait_for(agent_id, "registered", count=3)
    while client.registrations < 2:
        await asyncio.wait_for(beats.get(), EVENT_DEADLINE_S)
    assert client.accepted
    async with httpx.AsyncClient() as http:
        url = f"{registry.url}/agents/{agent_id}/heartbeat"
        stale = await http.post(url, json={}, headers={"Authorization": f"Bearer {intruder}"})
        assert stale.status_code == 401  # the intruder's token no longer opens it
    assert await client.deregister() is True


async def test_search_and_best_fit_answer_from_the_cache_within_its_ttl(
    registry: ServiceProcess, client: RegistryClient
) -> None:
    cap = _id("cached")
    first, second = _id("first"), _id("second")
    await _register(registry, first, [cap])
    assert [a["agent_id"] for a in await client.search([cap])] == [first]
    assert (await client.best_fit([cap]) or {}).get("agent_id") == first

    # The registry changes: the cached client does not see it, an uncached one does.
    await _register(registry, second, [cap])
    await _delete(registry, first)
    uncached = RegistryClient(registry.url, cache_ttl=0)
    try:
        assert [a["agent_id"] for a in await uncached.search([cap])] == [second]
        assert (await uncached.best_fit([cap]) or {}).get("agent_id") == second
        assert [a["agent_id"] for a in await client.search([cap])] == [first]
        assert (await client.best_fit([cap]) or {}).get("agent_id") == first
        # Another query is another cache entry: it asks the registry.
        assert [a["agent_id"] for a in await client.search([cap], match="any")] == [second]

        client.invalidate_cache()
        assert [a["agent_id"] for a in await client.search([cap])] == [second]
        assert (await client.best_fit([cap]) or {}).get("agent_id") == second

        # "Nobody offers it" is cached too, until invalidated.
        missing, third = _id("missing"), _id("third")
        assert await client.best_fit([missing]) is None
        await _register(registry, third, [missing])
        assert (await uncached.best_fit([missing]) or {}).get("agent_id") == third
        assert await client.best_fit([missing]) is None
        client.invalidate_cache()
        assert (await client.best_fit([missing]) or {}).get("agent_id") == third
    finally:
        await uncached.close()


async def test_search_cache_expires_after_its_ttl(registry: ServiceProcess) -> None:
    cap, only, later = _id("expiring"), _id("only"), _id("later")
    await _register(registry, only, [cap])
    short = RegistryClient(registry.url, cache_ttl=0.2)
    try:
        assert [a["agent_id"] for a in await short.search([cap])] == [only]
        await _register(registry, later, [cap])
        # No event marks the end of a TTL: ask until the cached answer is replaced.
        deadline = asyncio.get_running_loop().time() + EVENT_DEADLINE_S
        while later not in [a["agent_id"] for a in await short.search([cap])]:
            assert asyncio.get_running_loop().time() < deadline, "cache never expired"
            await asyncio.sleep(0.05)
    finally:
        await short.close()


async def test_capabilities_changed_and_deregistered_events(
    registry: ServiceProcess, events: RegistryEventLog
) -> None:
    agent_id = _id("morph")
    await _register(registry, agent_id, ["alpha"])
    await _register(registry, agent_id, ["alpha", "beta"])
    changed = await events.wait_for(agent_id, "capabilities_changed")
    assert changed[0]["capabilities"] == ["alpha", "beta"]

    # Same capabilities again (in another order): registered, but no capabilities_changed.
    token = await _register(registry, agent_id, ["beta", "alpha"])
    await events.wait_for(agent_id, "registered", count=3)
    async with httpx.AsyncClient() as http:
        beat = await http.post(
            f"{registry.url}/agents/{agent_id}/heartbeat",
            json={"status": "busy", "seq": 1},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert beat.status_code == 200 and beat.json()["status"] == "busy"
        gone = await http.delete(
            f"{registry.url}/agents/{agent_id}", headers={"Authorization": f"Bearer {token}"}
        )
        assert gone.status_code == 200
    deregistered = await events.wait_for(agent_id, "deregistered")
    assert deregistered[0]["previous_status"] == "busy"
    # The registry publishes in order, so everything before the deregistration has been seen.
    assert len(events.of(agent_id, "capabilities_changed")) == 1
    assert [p["change"] for p in events.of(agent_id)] == [
        "registered",
        "status",  # None -> idle
        "registered",
        "capabilities_changed",
        "registered",
        "status",  # idle -> busy
        "deregistered",
    ]
