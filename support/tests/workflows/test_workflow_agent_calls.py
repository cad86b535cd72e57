"""Workflow nodes talking to agents over the real bus (Redis), run by an in-process worker on real
PostgreSQL: in-step retries of transient failures, step timeouts of the templates, and a health
check that answers `error` during pr_deployment's verify.

The agents here are scripted bus consumers (`EventBus.serve_requests`), so a test can make one
stay silent once or answer an error exactly where the workflow must cope with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from langgraph.types import RetryPolicy
from prometheus_client import REGISTRY
from psycopg_pool import AsyncConnectionPool

import agent_orchestrator.workflows.catalog  # noqa: F401 - registers pr_deployment
from agent_orchestrator.collaboration import CollaborationStore
from agent_orchestrator.demo.sample_repo import create_sample_repo
from agent_orchestrator.runs.checkpointing import run_config, saver_for_run
from agent_orchestrator.runs.models import RunStatus
from agent_orchestrator.runs.runtime import RunsRuntime
from agent_orchestrator.runs.workflow_table import WorkflowTable, default_workflows
from agent_orchestrator.workflows.agent_calls import (
    AGENT_RETRY,
    call_agent,
    close_resources,
    install_resources,
)
from agent_orchestrator.workflows.templates import Step, sequential
from shared.bus import AgentRequestEvent, EventBus
from shared.config import Settings
from support.tests.agents.processes import free_port
from support.tests.runs.helpers import running_workers, wait_for_status
from support.tests.runs.toys import ToyInput, ToyState

pytestmark = pytest.mark.integration

Handler = Callable[[AgentRequestEvent], Awaitable[dict[str, Any]]]


@dataclass
class ScriptedAgents:
    """Agents on their own bus connection; every request they receive is recorded."""

    bus: EventBus
    received: list[AgentRequestEvent] = field(default_factory=list)

    async def serve(self, agent_id: str, handlers: dict[str, Handler]) -> None:
        async def handle(request: AgentRequestEvent) -> dict[str, Any]:
            self.received.append(request)
            return await handlers[request.request_type](request)

        await self.bus.serve_requests(agent_id, [], handle, concurrency=4)

    def requests(self, request_type: str) -> list[AgentRequestEvent]:
        return [r for r in self.received if r.request_type == request_type]


@pytest.fixture
async def agents(settings: Settings) -> AsyncIterator[ScriptedAgents]:
    bus = EventBus.from_settings(settings, agent_id="scripted-agents")
    try:
        yield ScriptedAgents(bus)
    finally:
        await bus.close()


@pytest.fixture
async def workflow_bus(settings: Settings) -> AsyncIterator[EventBus]:
    """The bus the nodes use (as the orchestrator service installs its own)."""
    bus = EventBus.from_settings(settings, agent_id="orchestrator")
    install_resources(settings, bus)
    try:
        yield bus
    finally:
        await close_resources()
        await bus.close()


async def _runtime(database_url: str, workflows: WorkflowTable) -> RunsRuntime:
    return await RunsRuntime.open(database_url, workflows=workflows, pool_max=6)


def _calls(samples: dict[str, str]) -> float:
    return REGISTRY.get_sample_value("devtools_workflow_agent_calls_total", samples) or 0.0


# -- in-step retry of a timed-out agent call ----------------------------------------------------


async def ask_the_flaky_agent(state: ToyState) -> dict[str, Any]:
    answer = await call_agent("flaky", "PING", {"label": state["label"]}, timeout=0.5)
    return {"final_result": answer}


async def test_a_timed_out_agent_call_is_retried_inside_the_step(
    database_url: str, agents: ScriptedAgents, workflow_bus: EventBus
) -> None:
    never = asyncio.Event()

    async def ping(request: AgentRequestEvent) -> dict[str, Any]:
        if len(agents.requests("PING")) == 1:
            await never.wait()  # silent on the first request: the caller's deadline passes
        return {"pong": request.payload["label"]}

    await agents.serve("flaky", {"PING": ping})
    workflows = WorkflowTable()
    workflows.register(
        "toy_flaky_agent",
        lambda: sequential(ToyState, [Step("ask", ask_the_flaky_agent, retry=AGENT_RETRY)]),
        ToyInput,
    )
    timeouts_before = _calls({"agent": "flaky", "request_type": "PING", "outcome": "timeout"})
    runtime = await _runtime(database_url, workflows)
    try:
        run = await runtime.queue.enqueue("toy_flaky_agent", {"label": "once"})
        async with running_workers(runtime, count=1):
            done = await wait_for_status(runtime, run.id, [RunStatus.SUCCEEDED, RunStatus.FAILED])
        events = [e.kind for e in await runtime.queue.events_after(run.id, 0)]
    finally:
        await runtime.close()

    assert done.status == RunStatus.SUCCEEDED, done.error
    assert done.result["final_result"] == {"pong": "once"}
    # The step was retried by LangGraph inside the first attempt: the run itself never failed.
    assert (done.attempts, done.failures) == (1, 0)
    assert "retry_scheduled" not in events
    pings = agents.requests("PING")
    assert len(pings) == 2 and pings[0].request_id != pings[1].request_id
    assert _calls({"agent": "flaky", "request_type": "PING", "outcome": "timeout"}) == timeouts_before + 1


# -- the templates' step timeout ----------------------------------------------------------------

SLOW_CALLS: dict[str, int] = {}


async def slow_the_first_time(state: ToyState) -> dict[str, Any]:
    label = state["label"]
    SLOW_CALLS[label] = SLOW_CALLS.get(label, 0) + 1
    if SLOW_CALLS[label] == 1 or label.startswith("always"):
        await asyncio.Event().wait()  # until the step timeout cancels this attempt
    return {"final_result": f"{label} done on attempt {SLOW_CALLS[label]}"}


async def test_the_template_timeout_cancels_a_slow_attempt_and_the_retry_succeeds(database_url: str) -> None:
    workflows = WorkflowTable()
    quick_retry = RetryPolicy(initial_interval=0.05, max_attempts=2)
    workflows.register(
        "toy_timeout_retry",
        lambda: sequential(ToyState, [("slow", slow_the_first_time)], retry=quick_retry, timeout=0.5),
        ToyInput,
    )
    workflows.register(
        "toy_timeout_only",
        lambda: sequential(ToyState, [Step("slow", slow_the_first_time, timeout=0.5)]),
        ToyInput,
    )
    runtime = await _runtime(database_url, workflows)
    try:
        retried = await runtime.queue.enqueue("toy_timeout_retry", {"label": "retried"})
        stuck = await runtime.queue.enqueue("toy_timeout_only", {"label": "always-stuck"}, max_attempts=1)
        async with running_workers(runtime, count=1):
            ok = await wait_for_status(runtime, retried.id, [RunStatus.SUCCEEDED, RunStatus.FAILED])
            failed = await wait_for_status(runtime, stuck.id, [RunStatus.SUCCEEDED, RunStatus.FAILED])
    finally:
        await runtime.close()

    assert ok.status == RunStatus.SUCCEEDED, ok.error
    assert ok.result["final_result"] == "retried done on attempt 2"
    assert (ok.attempts, ok.failures) == (1, 0)
    # Without a retry policy the timeout ends the step, and with it the run.
    assert failed.status == RunStatus.FAILED
    assert (failed.error or "").startswith("NodeTimeoutError") and SLOW_CALLS["always-stuck"] == 1


# -- pr_deployment: the verify health check answers an error ------------------------------------


async def test_a_health_check_error_at_verify_rolls_back_and_reports(
    database_url: str, agents: ScriptedAgents, workflow_bus: EventBus, tmp_path: Path
) -> None:
    repo = create_sample_repo(tmp_path / "repo", free_port())

    async def review(request: AgentRequestEvent) -> dict[str, Any]:
        stats = {"files_changed": 2, "lines_added": 8, "lines_deleted": 0}
        return {"verdict": "approve", "head_commit": "c0ffee", "stats": stats, "findings": []}

    async def pipeline(request: AgentRequestEvent) -> dict[str, Any]:
        return {"status": "passed", "passed": 2, "failed": 0, "log_tail": ""}

    async def deploy(request: AgentRequestEvent) -> dict[str, Any]:
        return {"status": "deployed", "release_id": "r2", "previous_release": "r1", "message": "live"}

    async def health(request: AgentRequestEvent) -> dict[str, Any]:
        raise RuntimeError("state file of 'verify-env' is unreadable")

    async def rollback(request: AgentRequestEvent) -> dict[str, Any]:
        return {"status": "rolled_back", "to_release": "r1", "message": "release r1 is live again"}

    await agents.serve("code-review", {"REVIEW_CODE": review})
    await agents.serve("cicd", {"RUN_PIPELINE": pipeline})
    await agents.serve(
        "infrastructure", {"DEPLOY_SERVICE": deploy, "HEALTH_CHECK": health, "ROLLBACK": rollback}
    )
    runtime = await _runtime(database_url, default_workflows)
    try:
        data = {"repo": str(repo.path), "head": repo.feature, "environment": "verify-env"}
        run = await runtime.queue.enqueue("pr_deployment", data, max_attempts=1)
        async with running_workers(runtime, count=1):
            done = await wait_for_status(runtime, run.id, [RunStatus.SUCCEEDED, RunStatus.FAILED])
        state = await _final_values(runtime, run.id, "pr_deployment")
    finally:
        await runtime.close()

    assert done.status == RunStatus.FAILED
    assert done.error is not None and done.error.startswith("WorkflowFailed: verification failed")
    assert "state file of 'verify-env' is unreadable" in done.error and "rollback rolled_back" in done.error
    (sent,) = agents.requests("ROLLBACK")
    deploy_token = agents.requests("DEPLOY_SERVICE")[0].payload["fencing_token"]
    # Rolled back under the lease the deploy took, still held: nobody could deploy in between.
    assert sent.payload["environment"] == "verify-env" and sent.payload["fencing_token"] == deploy_token
    final = state["final_result"]
    assert (final["outcome"], final["ok"]) == ("verify_failed", False)
    assert "- rollback: rolled_back: release r1 is live again" in final["report"]
    assert state["error_log"][-1]["step"] == "verify"
    # The people in the loop are told in a thread on the run: the health check, then the rollback.
    store = CollaborationStore(runtime_pool := await _pool(database_url))
    try:
        (thread,) = await store.threads(run_id=run.id)
        notes = await store.messages(thread.id)
    finally:
        await runtime_pool.close()
    assert state["verify"]["thread_id"] == str(thread.id)
    assert [(m.author, m.kind.value) for m in notes] == [
        ("infrastructure", "finding"),
        ("infrastructure", "decision"),
    ]
    assert "state file of 'verify-env' is unreadable" in notes[0].body and "rolled_back" in notes[1].body


async def _final_values(runtime: RunsRuntime, run_id: UUID, workflow: str) -> dict[str, Any]:
    saver = saver_for_run(runtime.checkpoint_pool)
    graph = default_workflows.get(workflow).graph().compile(checkpointer=saver)
    return (await graph.aget_state(run_config(str(run_id)))).values


async def test_a_health_check_error_after_a_self_healing_fix_ends_in_a_report(
    database_url: str, agents: ScriptedAgents, workflow_bus: EventBus
) -> None:
    checks = 0

    async def health(request: AgentRequestEvent) -> dict[str, Any]:
        nonlocal checks
        checks += 1
        if checks == 1:  # detect: the app is down
            return {"status": "down", "healthy": False, "reason": "the app's process is gone"}
        raise RuntimeError("state file of 'heal-env' is unreadable")  # verify: the check itself fails

    async def restart(request: AgentRequestEvent) -> dict[str, Any]:
        return {"status": "up", "healthy": True}

    await agents.serve("infrastructure", {"HEALTH_CHECK": health, "RESTART": restart})
    runtime = await _runtime(database_url, default_workflows)
    try:
        run = await runtime.queue.enqueue("self_healing", {"environment": "heal-env"}, max_attempts=1)
        async with running_workers(runtime, count=1):
            done = await wait_for_status(runtime, run.id, [RunStatus.SUCCEEDED, RunStatus.FAILED])
        state = await _final_values(runtime, run.id, "self_healing")
    finally:
        await runtime.close()

    assert done.status == RunStatus.FAILED
    assert done.error is not None and "the check after attempt 1 of heal-env failed" in done.error
    assert "state file of 'heal-env' is unreadable" in done.error
    assert len(agents.requests("RESTART")) == 1  # no second fix chosen blind
    final = state["final_result"]
    assert (final["outcome"], final["ok"], final["attempts"]) == ("check_failed", False, 1)
    assert "state file of 'heal-env' is unreadable" in final["report"]


async def _pool(database_url: str) -> AsyncConnectionPool:
    pool = AsyncConnectionPool(database_url, min_size=1, max_size=2, open=False, kwargs={"autocommit": True})
    await pool.open()
    return pool
