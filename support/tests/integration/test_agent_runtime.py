"""The agent runtime, through a test agent run as a real process: HTTP, bus, registration, busy state."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest
import redis

from shared.lib.agent_events import AgentRequestEvent, ResponseStatus
from shared.lib.event_bus import EventBus
from support.tests.agents.processes import (
    ServiceProcess,
    agent_request_body,
    registry_record,
    start_echo_agent,
    wait_until,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def echo(module_env: dict[str, str], registry: ServiceProcess, log_dir: Path) -> Iterator[ServiceProcess]:
    agent = start_echo_agent(module_env, registry, log_dir)
    try:
        wait_until(lambda: registry_record(registry, "echo"), what="echo registered")
        yield agent
    finally:
        agent.terminate()


request = partial(agent_request_body, "echo")


def test_agent_registers_with_its_capabilities(echo: ServiceProcess, registry: ServiceProcess) -> None:
    record = registry_record(registry, "echo")
    assert record is not None
    assert record["base_url"] == echo.url and record["capacity"] == 2
    assert [c["name"] for c in record["capabilities"]] == ["echo", "wait"]
    assert record["metadata"]["request_types"] == ["ECHO", "FAIL", "WAIT"]
    health = httpx.get(f"{echo.url}/health").json()
    assert health["registered"] is True and health["state"] == "idle"


def test_http_agent_request(echo: ServiceProcess) -> None:
    response = httpx.post(f"{echo.url}/agent-request", json=request("ECHO", {"text": "ab", "repeat": 2}))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (
        body["status"] == "success" and body["result"]["text"] == "abab" and body["result"]["via"] == "http"
    )
    assert body["target_agent"] == "tests" and body["source_agent"] == "echo"


def test_http_errors_are_4xx_or_error_responses(echo: ServiceProcess) -> None:
    unknown = httpx.post(f"{echo.url}/agent-request", json=request("NOPE", {}))
    assert unknown.status_code == 400
    assert "NOPE" in unknown.json()["error"] and unknown.json()["supported_request_types"] == [
        "ECHO",
        "FAIL",
        "WAIT",
    ]
    bad_payload = httpx.post(
        f"{echo.url}/agent-request", json=request("ECHO", {"text": "x", "repeat": "many"})
    )
    assert bad_payload.status_code == 422 and "payload.repeat" in bad_payload.json()["error"]
    no_source = httpx.post(f"{echo.url}/agent-request", json={"target_agent": "echo", "request_type": "ECHO"})
    assert no_source.status_code == 422 and "source_agent" in no_source.json()["error"]
    failed = httpx.post(f"{echo.url}/agent-request", json=request("FAIL", {"reason": "on purpose"}))
    assert failed.status_code == 200
    assert failed.json()["status"] == "error" and "on purpose" in failed.json()["error"]
    wrong_target = httpx.post(
        f"{echo.url}/agent-request", json={**request("ECHO", {"text": "x"}), "target_agent": "someone-else"}
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
        assert unknown.status == ResponseStatus.REJECTED and "ECHO, FAIL, WAIT" in (unknown.error or "")
        bad = await bus.request_agent(AgentRequestEvent(**request("ECHO", {"text": ""})), timeout=20)
        assert bad.status == ResponseStatus.ERROR and "payload.text" in (bad.error or "")
        failed = await bus.request_agent(AgentRequestEvent(**request("FAIL", {"reason": "bus"})), timeout=20)
        assert failed.status == ResponseStatus.ERROR and "asked to fail: bus" in (failed.error or "")


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
            full = await client.post(f"{echo.url}/agent-request", json=request("ECHO", {"text": "x"}))
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
    httpx.post(f"{echo.url}/agent-request", json=request("ECHO", {"text": "m"}))
    metrics = httpx.get(f"{echo.url}/metrics").text
    assert (
        'devtools_agent_requests_total{agent="echo",request_type="ECHO",status="success",via="http"}'
        in metrics
    )
