"""The agent runtime, through a test agent run as a real process: HTTP, bus, registration, busy state."""

from __future__ import annotations

import asyncio
import uuid
from functools import partial
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from shared.bus import AgentRequestEvent, AgentResponseEvent, ErrorClass, EventBus, ResponseStatus
from support.tests.agents.processes import (
    AGENT_AUTH,
    ServiceProcess,
    agent_request_body,
    registry_record,
    wait_until,
)

pytestmark = pytest.mark.integration


request = partial(agent_request_body, "echo")


def test_agent_registers_with_its_capabilities(echo: ServiceProcess, registry: ServiceProcess) -> None:
    record = registry_record(registry, "echo")
    assert record is not None
    assert record["base_url"] == echo.url and record["capacity"] == 2
    assert [c["name"] for c in record["capabilities"]] == ["echo", "wait"]
    assert record["metadata"]["request_types"] == ["ECHO", "FAIL", "RUN", "WAIT"]
    health = httpx.get(f"{echo.url}/health").json()
    assert health["registered"] is True and health["state"] == "idle"


def test_http_agent_request(echo: ServiceProcess) -> None:
    response = httpx.post(
        f"{echo.url}/agent-request", headers=AGENT_AUTH, json=request("ECHO", {"text": "ab", "repeat": 2})
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (
        body["status"] == "success" and body["result"]["text"] == "abab" and body["result"]["via"] == "http"
    )
    assert body["target_agent"] == "tests" and body["source_agent"] == "echo"


def test_http_errors_are_4xx_or_error_responses(echo: ServiceProcess) -> None:
    unknown = httpx.post(f"{echo.url}/agent-request", headers=AGENT_AUTH, json=request("NOPE", {}))
    assert unknown.status_code == 400
    assert "NOPE" in unknown.json()["error"] and unknown.json()["supported_request_types"] == [
        "ECHO",
        "FAIL",
        "RUN",
        "WAIT",
    ]
    bad_payload = httpx.post(
        f"{echo.url}/agent-request", headers=AGENT_AUTH, json=request("ECHO", {"text": "x", "repeat": "many"})
    )
    assert bad_payload.status_code == 422 and "payload.repeat" in bad_payload.json()["error"]
    no_source = httpx.post(
        f"{echo.url}/agent-request", headers=AGENT_AUTH, json={"target_agent": "echo", "request_type": "ECHO"}
    )
    assert no_source.status_code == 422 and "source_agent" in no_source.json()["error"]
    failed = httpx.post(
        f"{echo.url}/agent-request", headers=AGENT_AUTH, json=request("FAIL", {"reason": "on purpose"})
    )
    assert failed.status_code == 200
    assert failed.json()["status"] == "error" and "on purpose" in failed.json()["error"]
    over_http = httpx.post(
        f"{echo.url}/agent-request", headers=AGENT_AUTH, json=request("FAIL", {"kind": "permanent"})
    ).json()
    assert (over_http["error_code"], over_http["error_class"]) == ("broken_repository", "permanent")
    wrong_target = httpx.post(
        f"{echo.url}/agent-request",
        headers=AGENT_AUTH,
        json={**request("ECHO", {"text": "x"}), "target_agent": "someone-else"},
    )
    assert wrong_target.status_code == 400 and "someone-else" in wrong_target.json()["error"]


async def test_bus_requests(echo: ServiceProcess, redis_url: str, module_prefix: str) -> None:
    async with EventBus(redis_url, module_prefix, agent_id="tests") as bus:
        by_id = await bus.request_agent(AgentRequestEvent(**request("ECHO", {"text": "hi"})), timeout=20)
        assert by_id.status == ResponseStatus.SUCCESS and by_id.result == {
            "text": "hi",
            "via": "bus",
            "replica": "echo",
        }
        by_cap = await bus.request_agent(
            AgentRequestEvent(
                **{**request("ECHO", {"text": "c"}), "target_agent": "any", "required_capability": "echo"}
            ),
            timeout=20,
        )
        assert by_cap.status == ResponseStatus.SUCCESS and by_cap.result["text"] == "c"
        unknown = await bus.request_agent(AgentRequestEvent(**request("NOPE", {})), timeout=20)
        assert unknown.status == ResponseStatus.REJECTED and "ECHO, FAIL, RUN, WAIT" in (unknown.error or "")
        bad = await bus.request_agent(AgentRequestEvent(**request("ECHO", {"text": ""})), timeout=20)
        assert bad.status == ResponseStatus.ERROR and "payload.text" in (bad.error or "")
        failed = await bus.request_agent(AgentRequestEvent(**request("FAIL", {"reason": "bus"})), timeout=20)
        assert failed.status == ResponseStatus.ERROR and "asked to fail: bus" in (failed.error or "")


async def test_errors_carry_a_code_and_a_class(
    echo: ServiceProcess, redis_url: str, module_prefix: str
) -> None:
    """Callers decide on retries from the structured error, over the bus and over HTTP alike."""
    async with EventBus(redis_url, module_prefix, agent_id="tests") as bus:

        async def ask(request_type: str, payload: dict[str, Any]) -> AgentResponseEvent:
            return await bus.request_agent(AgentRequestEvent(**request(request_type, payload)), timeout=20)

        crash = await ask("FAIL", {"reason": "bug"})
        permanent = await ask("FAIL", {"kind": "permanent"})
        retryable = await ask("FAIL", {"kind": "retryable"})
        unknown = await ask("NOPE", {})
        bad = await ask("ECHO", {"text": ""})
    got = {
        name: (r.status, r.error_code, r.error_class, r.retry_after_seconds)
        for name, r in dict(
            crash=crash, permanent=permanent, retryable=retryable, unknown=unknown, bad=bad
        ).items()
    }
    assert got == {
        "crash": (ResponseStatus.ERROR, "internal", ErrorClass.RETRYABLE, None),
        "permanent": (ResponseStatus.ERROR, "broken_repository", ErrorClass.PERMANENT, None),
        "retryable": (ResponseStatus.ERROR, "rate_limited", ErrorClass.RETRYABLE, 7),
        "unknown": (ResponseStatus.REJECTED, "rejected", ErrorClass.PERMANENT, None),
        "bad": (ResponseStatus.ERROR, "invalid_input", ErrorClass.PERMANENT, None),
    }


async def test_busy_while_full(
    echo: ServiceProcess, registry: ServiceProcess, redis_url: str, module_prefix: str
) -> None:
    gate = uuid.uuid4().hex
    sync = redis.Redis.from_url(redis_url, decode_responses=True)
    async with EventBus(redis_url, module_prefix, agent_id="tests") as bus:
        held = [
            asyncio.create_task(
                bus.request_agent(AgentRequestEvent(**request("WAIT", {"gate": gate})), timeout=30)
            )
            for _ in range(2)
        ]
        await asyncio.to_thread(
            wait_until,
            lambda: sync.llen(f"{module_prefix}:test:started:{gate}") == 2,
            what="both requests running",
        )
        await asyncio.to_thread(
            wait_until,
            lambda: registry_record(registry, "echo")["status"] == "busy",
            what="registry shows busy",
        )
        async with httpx.AsyncClient() as client:
            full = await client.post(
                f"{echo.url}/agent-request", headers=AGENT_AUTH, json=request("ECHO", {"text": "x"})
            )
        assert full.status_code == 503 and "capacity" in full.json()["error"]
        sync.rpush(f"{module_prefix}:test:release:{gate}", "go", "go")
        responses = await asyncio.gather(*held)
        assert all(r.status == ResponseStatus.SUCCESS and r.result["released"] for r in responses)
        await asyncio.to_thread(
            wait_until,
            lambda: registry_record(registry, "echo")["status"] == "idle",
            what="registry shows idle again",
        )
    sync.close()


def test_agent_metrics(echo: ServiceProcess) -> None:
    httpx.post(f"{echo.url}/agent-request", headers=AGENT_AUTH, json=request("ECHO", {"text": "m"}))
    metrics = httpx.get(f"{echo.url}/metrics", headers=AGENT_AUTH).text
    assert (
        'devtools_agent_requests_total{agent="echo",request_type="ECHO",status="success",via="http"}'
        in metrics
    )


async def test_http_and_bus_share_the_capacity(
    echo: ServiceProcess, registry: ServiceProcess, redis_url: str, module_prefix: str
) -> None:
    http_gate, bus_gate = uuid.uuid4().hex, uuid.uuid4().hex
    started = f"{module_prefix}:test:started:{{}}"
    release = f"{module_prefix}:test:release:{{}}"
    watcher = aioredis.Redis.from_url(redis_url, decode_responses=True)

    def health() -> dict:  # type: ignore[type-arg]
        return httpx.get(f"{echo.url}/health", timeout=5).json()

    async with EventBus(redis_url, module_prefix, agent_id="tests") as bus, httpx.AsyncClient() as client:
        # Both slots taken over HTTP.
        held_http = [
            asyncio.create_task(
                client.post(
                    f"{echo.url}/agent-request",
                    headers=AGENT_AUTH,
                    json=request("WAIT", {"gate": http_gate}),
                    timeout=60,
                )
            )
            for _ in range(2)
        ]
        for _ in range(2):
            assert await watcher.blpop([started.format(http_gate)], timeout=30) is not None
        # A bus request arrives: received, but not started while HTTP holds every slot.
        held_bus = asyncio.create_task(
            bus.request_agent(AgentRequestEvent(**request("WAIT", {"gate": bus_gate})), timeout=60)
        )
        waiting = await asyncio.to_thread(
            wait_until, lambda: (h := health())["queued_requests"] == 1 and h, what="bus request queued"
        )
        assert waiting["active_requests"] == 2 and waiting["state"] == "busy"
        assert await watcher.llen(started.format(bus_gate)) == 0
        await asyncio.to_thread(
            wait_until,
            lambda: registry_record(registry, "echo")["status"] == "busy",
            what="registry shows busy",
        )
        full = await client.post(
            f"{echo.url}/agent-request", headers=AGENT_AUTH, json=request("ECHO", {"text": "x"})
        )
        assert full.status_code == 503 and "capacity" in full.json()["error"]

        # One HTTP request finishes: its slot goes to the waiting bus request, not to a new caller.
        await watcher.rpush(release.format(http_gate), "go")
        assert await watcher.blpop([started.format(bus_gate)], timeout=30) is not None
        done, _pending = await asyncio.wait(held_http, return_when=asyncio.FIRST_COMPLETED)
        assert len(done) == 1 and next(iter(done)).result().json()["result"]["released"] is True
        now = health()
        assert now["active_requests"] == 2 and now["queued_requests"] == 0
        full = await client.post(
            f"{echo.url}/agent-request", headers=AGENT_AUTH, json=request("ECHO", {"text": "x"})
        )
        assert full.status_code == 503

        await watcher.rpush(release.format(http_gate), "go")
        await watcher.rpush(release.format(bus_gate), "go")
        responses = await asyncio.gather(*held_http)
        assert all(r.status_code == 200 and r.json()["result"]["released"] for r in responses)
        from_bus = await held_bus
        assert from_bus.status == ResponseStatus.SUCCESS and from_bus.result["via"] == "bus"
        assert from_bus.result["released"] is True
    await watcher.aclose()
    idle = await asyncio.to_thread(
        wait_until, lambda: (h := health())["active_requests"] == 0 and h, what="agent idle again"
    )
    assert idle["state"] == "idle" and idle["queued_requests"] == 0
