"""A run's agent request queued in a stream when Redis restarts without persistence: the stream is
gone, and the requester sends the request again at once (a run event says so) instead of letting the
run sit silent until the step's timeout, ten minutes later."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from agent_orchestrator.runs.models import RunEvent, RunStatus
from agent_orchestrator.runs.queue import EVENTS_CHANNEL
from agent_orchestrator.runs.runtime import RunsRuntime
from agent_orchestrator.runs.workflow_table import WorkflowTable
from agent_orchestrator.workflows.agent_calls import call_agent, close_resources, install_resources
from agent_orchestrator.workflows.templates import Step, sequential
from shared.bus import AgentRequestEvent, EventBus, RequestPriority, agent_target
from shared.config import Settings
from support.tests.chaos.private_redis import PrivateRedis
from support.tests.runs.helpers import running_workers, wait_for_status
from support.tests.runs.toys import ToyInput, ToyState

pytestmark = pytest.mark.chaos

STEP_TIMEOUT = 600.0  # the request would wait this long if nobody noticed it was lost


@pytest.fixture
def volatile_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path, persistent=False)
    server.start()
    yield server
    server.kill()


async def ask_the_busy_agent(state: ToyState) -> dict[str, Any]:
    answer = await call_agent("busy", "WORK", {"label": state["label"]}, timeout=STEP_TIMEOUT)
    return {"final_result": answer}


@pytest.fixture
async def buses(volatile_redis: PrivateRedis, settings: Settings) -> AsyncIterator[tuple[EventBus, EventBus]]:
    """The workflow nodes' bus (as the orchestrator installs it) and the agent's, on the volatile Redis."""
    nodes = EventBus(volatile_redis.url, settings.redis_prefix, agent_id="orchestrator")
    agent = EventBus(volatile_redis.url, settings.redis_prefix, agent_id="busy")
    install_resources(settings, nodes)
    try:
        yield nodes, agent
    finally:
        await close_resources()
        await agent.close()
        await nodes.close()


async def _event(runtime: RunsRuntime, run_id: UUID, kind: str) -> RunEvent:
    """The run's first event of `kind`, awaited through NOTIFY."""
    sub = runtime.listener.subscribe(EVENTS_CHANNEL, key=str(run_id))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for event in await runtime.queue.events_after(run_id, 0):
                if event.kind == kind:
                    return event
            await sub.wait(deadline - time.monotonic())
        raise AssertionError(f"no {kind} event")
    finally:
        sub.close()


async def test_a_request_lost_in_a_redis_restart_is_sent_again_with_a_run_event(
    database_url: str, volatile_redis: PrivateRedis, buses: tuple[EventBus, EventBus]
) -> None:
    nodes, agent = buses
    release, holding = asyncio.Event(), asyncio.Event()
    served: list[str] = []

    async def handler(request: AgentRequestEvent) -> dict[str, Any]:
        served.append(request.request_type)
        if request.request_type == "HOLD":
            holding.set()
            await release.wait()
        return {"done": request.request_type}

    # One slot, taken by another requester's request: the run's request waits in the stream.
    await agent.serve_requests("busy", [], handler, concurrency=1, idempotent=False)
    other = EventBus(volatile_redis.url, nodes.keys.prefix, agent_id="someone-else")
    held = asyncio.create_task(
        other.request_agent(
            AgentRequestEvent(
                source_agent="someone-else", target_agent="busy", request_type="HOLD", payload={},
                timeout_seconds=120,
            )
        )
    )  # fmt: skip
    await asyncio.wait_for(holding.wait(), 30)

    workflows = WorkflowTable()
    workflows.register(
        "toy_busy_agent", lambda: sequential(ToyState, [Step("ask", ask_the_busy_agent)]), ToyInput
    )
    runtime = await RunsRuntime.open(database_url, workflows=workflows, pool_max=4)
    try:
        run = await runtime.queue.enqueue("toy_busy_agent", {"label": "lost"})
        async with running_workers(runtime, count=1):
            await _event(runtime, run.id, "node_started")
            stream = nodes.keys.request_stream(agent_target("busy"), RequestPriority.NORMAL)
            while await nodes.client.xlen(stream) < 2:  # noqa: ASYNC110 - Redis state, no event announces it
                await asyncio.sleep(0.05)

            volatile_redis.kill()  # everything Redis held is gone: streams, groups, the queued request
            volatile_redis.start()
            resent = await _event(runtime, run.id, "request_resent")
            release.set()
            done = await wait_for_status(runtime, run.id, [RunStatus.SUCCEEDED, RunStatus.FAILED])
    finally:
        await runtime.close()
        held.cancel()
        await asyncio.gather(held, return_exceptions=True)
        await other.close()

    assert done.status == RunStatus.SUCCEEDED, done.error
    assert done.result["final_result"] == {"done": "WORK"}
    assert done.attempts == 1  # no retry of the run: the request itself was sent again
    assert resent.node == "ask"
    assert (resent.data["agent"], resent.data["request_type"]) == ("busy", "WORK")
    assert "Redis lost" in resent.data["reason"]
    assert served.count("WORK") == 1
