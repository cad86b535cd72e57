"""A workflow step's calls to an agent, through the echo test agent (a real process).

A requester that stops waiting cancels its request on the agent: the agent runs a command in its own
process group; cancelling the request, from the bus or from a workflow step that is cancelled, kills
that process group, frees the slot and answers `cancelled`. A request cancelled before an agent read
it is never started. An agent killed with SIGKILL leaves no command running. An error the agent
declares retryable makes the step try again (TransientAgentError); its verdict or a crash does not."""

from __future__ import annotations

import asyncio
import os
import time
from functools import partial
from pathlib import Path

import httpx
import pytest

from agent_orchestrator.workflows.agent_calls import (
    AgentCallFailed,
    TransientAgentError,
    call_agent,
    close_resources,
    install_resources,
)
from services.infrastructure.errors import FencingUnavailableError
from shared.bus import AgentRequestEvent, ErrorClass, EventBus, ResponseStatus, classify
from shared.config import load_settings
from support.tests.agents.processes import (
    AGENT_AUTH,
    ServiceProcess,
    agent_request_body,
    registry_record,
    start_echo_agent,
    wait_until,
)

pytestmark = pytest.mark.integration

request = partial(agent_request_body, "echo")
DEADLINE_SECONDS = 30.0


def _long_command(pid_file: Path) -> dict[str, object]:
    """A command whose child (a sleep) writes its pid, then outlives any test unless killed."""
    return {"command": f"sleep 600 & echo $! > {pid_file}; wait", "timeout_seconds": 900}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _pid(pid_file: Path) -> int | None:
    text = pid_file.read_text().strip() if pid_file.exists() else ""
    return int(text) if text else None


async def _child_started(pid_file: Path) -> int:
    await _until(lambda: _pid(pid_file) is not None, "the command never started")
    pid = _pid(pid_file)
    assert pid is not None
    return pid


async def _until(check: object, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


def _active(echo: ServiceProcess) -> int:
    return int(httpx.get(f"{echo.url}/health", timeout=5).json()["active_requests"])


async def test_a_cancelled_request_kills_its_command_and_frees_the_slot(
    echo: ServiceProcess, redis_url: str, module_prefix: str, tmp_path: Path
) -> None:
    pid_file = tmp_path / "child.pid"
    async with EventBus(redis_url, module_prefix, agent_id="tests") as bus:
        event = AgentRequestEvent(**request("RUN", _long_command(pid_file)), timeout_seconds=900)
        answer = asyncio.create_task(bus.request_agent(event, timeout=900))
        child = await _child_started(pid_file)
        assert _alive(child) and _active(echo) == 1
        await bus.cancel_request(event.request_id, "the test stopped waiting", 900)
        response = await asyncio.wait_for(answer, DEADLINE_SECONDS)
    assert response.status is ResponseStatus.ERROR and response.error_code == "cancelled"
    assert "the test stopped waiting" in (response.error or "")
    await _until(lambda: not _alive(child), "the command's child outlived the cancel")
    await _until(lambda: _active(echo) == 0, "the slot was not freed")


async def test_a_request_cancelled_before_it_was_read_never_starts(
    echo: ServiceProcess, redis_url: str, module_prefix: str, tmp_path: Path
) -> None:
    pid_file = tmp_path / "never.pid"
    async with EventBus(redis_url, module_prefix, agent_id="tests") as bus:
        event = AgentRequestEvent(**request("RUN", _long_command(pid_file)), timeout_seconds=60)
        await bus.cancel_request(event.request_id, "changed my mind", 60)
        response = await bus.request_agent(event, timeout=60)
    assert response.status is ResponseStatus.ERROR and response.error_code == "cancelled"
    assert _pid(pid_file) is None


async def test_a_cancelled_workflow_step_cancels_its_agent_call(
    echo: ServiceProcess, redis_url: str, module_prefix: str, tmp_path: Path
) -> None:
    pid_file = tmp_path / "step.pid"
    settings = load_settings(redis_url=redis_url, redis_prefix=module_prefix, data_dir=tmp_path / "data")
    async with EventBus(redis_url, module_prefix, agent_id="orchestrator") as bus:
        install_resources(settings, bus)
        try:
            step = asyncio.create_task(call_agent("echo", "RUN", _long_command(pid_file), timeout=900))
            child = await _child_started(pid_file)
            step.cancel()  # what the run worker does to the node of a cancelled run
            with pytest.raises(asyncio.CancelledError):
                await step
        finally:
            await close_resources()
    await _until(lambda: not _alive(child), "the step's command outlived the cancelled step")
    await _until(lambda: _active(echo) == 0, "the slot was not freed")


async def test_an_agent_killed_with_sigkill_leaves_no_command_running(
    module_env: dict[str, str], registry: ServiceProcess, log_dir: Path, redis_url: str, tmp_path: Path
) -> None:
    victim = start_echo_agent(module_env, registry, log_dir, replica="victim")
    pid_file = tmp_path / "orphan.pid"
    try:
        wait_until(lambda: registry_record(registry, "echo.victim"), what="victim registered")
        body = {**request("RUN", _long_command(pid_file)), "timeout_seconds": 900}
        sent = asyncio.create_task(
            asyncio.to_thread(
                httpx.post, f"{victim.url}/agent-request", json=body, headers=AGENT_AUTH, timeout=900
            )
        )
        child = await _child_started(pid_file)
        victim.kill()  # SIGKILL: no drain, no cleanup
        with pytest.raises(httpx.HTTPError):
            await sent
    finally:
        victim.kill()
    await _until(lambda: not _alive(child), "the command outlived its SIGKILLed agent")


async def test_a_retryable_error_is_tried_again_and_a_verdict_or_a_crash_is_not(
    echo: ServiceProcess, redis_url: str, module_prefix: str, tmp_path: Path
) -> None:
    settings = load_settings(redis_url=redis_url, redis_prefix=module_prefix, data_dir=tmp_path / "data")
    async with EventBus(redis_url, module_prefix, agent_id="orchestrator") as bus:
        install_resources(settings, bus)
        try:
            with pytest.raises(TransientAgentError, match="rate_limited"):
                await call_agent("echo", "FAIL", {"kind": "retryable"}, timeout=30)
            with pytest.raises(AgentCallFailed, match="asked to fail"):
                await call_agent("echo", "FAIL", {"kind": "permanent"}, timeout=30)
            with pytest.raises(AgentCallFailed, match="asked to fail"):
                await call_agent("echo", "FAIL", {"kind": "crash"}, timeout=30)  # `internal`: not retried
        finally:
            await close_resources()
    # The infrastructure agent's "the lock table is unreachable" is such a retryable error.
    info = classify(FencingUnavailableError("the lock table is unreachable"))
    assert (info.code, info.error_class) == ("unavailable", ErrorClass.RETRYABLE)
