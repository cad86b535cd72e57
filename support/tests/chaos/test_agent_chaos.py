"""A killed agent: the registry marks it offline (with its event) and a second replica takes over its work."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
import redis

from shared.bus import AgentRequestEvent, EventBus, ResponseStatus
from support.tests.agents.processes import ServiceProcess, registry_record, start_echo_agent, wait_until

pytestmark = pytest.mark.chaos


def _offline_events(client: redis.Redis, prefix: str, agent_id: str) -> list[dict]:  # type: ignore[type-arg]
    events = [json.loads(f["data"]) for _, f in client.xrange(f"{prefix}:bus:events")]
    return [
        e
        for e in events
        if e["payload"].get("agent_id") == agent_id and e["payload"].get("status") == "offline"
    ]


async def test_killed_agent_goes_offline_and_replica_takes_over_pending_work(
    module_env: dict[str, str], module_prefix: str, registry: ServiceProcess, log_dir: Path, redis_url: str
) -> None:
    sync = redis.Redis.from_url(redis_url, decode_responses=True)
    gate = uuid.uuid4().hex
    started = f"{module_prefix}:test:started:{gate}"
    first = start_echo_agent(module_env, registry, log_dir, replica="a")
    second: ServiceProcess | None = None
    try:
        await asyncio.to_thread(wait_until, lambda: registry_record(registry, "echo.a"), what="a registered")
        async with EventBus(redis_url, module_prefix, agent_id="tests") as bus:
            pending = asyncio.create_task(
                bus.request_agent(
                    AgentRequestEvent(
                        source_agent="tests", target_agent="echo", request_type="WAIT", payload={"gate": gate}
                    ),
                    timeout=60,
                )
            )
            await asyncio.to_thread(
                wait_until,
                lambda: sync.lrange(started, 0, -1) == ["echo.a"],
                what="request running on replica a",
            )
            first.kill()  # SIGKILL: no drain, no deregistration, the request stays pending in Redis

            second = start_echo_agent(module_env, registry, log_dir, replica="b")
            record = await asyncio.to_thread(
                wait_until,
                lambda: (r := registry_record(registry, "echo.a")) and r["status"] == "offline" and r,
                what="a marked offline",
            )
            assert record["active_requests"] == 0
            await asyncio.to_thread(
                wait_until, lambda: _offline_events(sync, module_prefix, "echo.a"), what="offline event"
            )
            await asyncio.to_thread(
                wait_until,
                lambda: sync.lrange(started, 0, -1) == ["echo.a", "echo.b"],
                what="replica b took the request over",
            )
            sync.rpush(f"{module_prefix}:test:release:{gate}", "go")
            response = await pending
            assert response.status == ResponseStatus.SUCCESS
            assert response.result == {"released": True, "replica": "echo.b", "via": "bus"}
            assert registry_record(registry, "echo.b")["status"] in ("idle", "busy")
    finally:
        first.kill()
        if second is not None:
            second.terminate()
        sync.close()
