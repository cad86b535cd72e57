"""Graceful drain on SIGTERM: no new work is taken, in-flight requests finish, the agent deregisters."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from shared.bus import AgentRequestEvent, EventBus, ResponseStatus
from support.tests.agents.processes import (
    AGENT_AUTH,
    ServiceProcess,
    registry_record,
    start_echo_agent,
    wait_until,
)

pytestmark = pytest.mark.integration


def wait_request(gate: str, **extra: Any) -> dict[str, Any]:
    return {
        "source_agent": "tests",
        "target_agent": "echo",
        "request_type": "WAIT",
        "payload": {"gate": gate},
        **extra,
    }


async def test_sigterm_drains_in_flight_work_then_deregisters(
    service_env: dict[str, str], registry: ServiceProcess, log_dir: Path, redis_url: str, redis_prefix: str
) -> None:
    # service_env uses this test's own Redis prefix: nothing else consumes its bus streams.
    agent = start_echo_agent(service_env, registry, log_dir)
    sync = redis.Redis.from_url(redis_url, decode_responses=True)
    gate = uuid.uuid4().hex
    started, release = f"{redis_prefix}:test:started:{gate}", f"{redis_prefix}:test:release:{gate}"
    try:
        await asyncio.to_thread(wait_until, lambda: registry_record(registry, "echo"), what="registered")
        async with (
            EventBus(redis_url, redis_prefix, agent_id="tests") as bus,
            httpx.AsyncClient(timeout=60) as client,
        ):
            over_http = asyncio.create_task(
                client.post(f"{agent.url}/agent-request", headers=AGENT_AUTH, json=wait_request(gate))
            )
            over_bus = asyncio.create_task(
                bus.request_agent(AgentRequestEvent(**wait_request(gate)), timeout=60)
            )
            await asyncio.to_thread(wait_until, lambda: sync.llen(started) == 2, what="both in flight")

            agent.process.send_signal(signal.SIGTERM)
            await asyncio.to_thread(
                wait_until, lambda: registry_record(registry, "echo")["status"] == "draining", what="draining"
            )
            # Work sent after SIGTERM is not taken by the draining agent; it waits for a replica.
            late = asyncio.create_task(
                bus.request_agent(
                    AgentRequestEvent(**{**wait_request(gate), "payload": {"gate": gate + "-late"}}),
                    timeout=60,
                )
            )
            assert agent.process.poll() is None, "exited with requests in flight"

            sync.rpush(release, "go", "go")
            http_response = await over_http
            bus_response = await over_bus
            assert http_response.status_code == 200 and http_response.json()["status"] == "success"
            assert http_response.json()["result"]["released"] is True
            assert bus_response.status == ResponseStatus.SUCCESS and bus_response.result["released"] is True

            assert await asyncio.to_thread(agent.process.wait, 30) == 0
            assert registry_record(registry, "echo") is None, "not deregistered"
            assert sync.llen(f"{redis_prefix}:test:started:{gate}-late") == 0
            assert not late.done()

            # Nothing accepted is lost: a new replica picks the late request up.
            replacement = start_echo_agent(service_env, registry, log_dir, replica="r2")
            try:
                sync.rpush(f"{redis_prefix}:test:release:{gate}-late", "go")
                late_response = await late
                assert late_response.status == ResponseStatus.SUCCESS
                assert late_response.result["replica"] == "echo.r2"
            finally:
                replacement.terminate()
    finally:
        agent.kill()
        sync.close()
