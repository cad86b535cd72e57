"""The one way a workflow node talks to an agent: `await call_agent(...)` over the event bus.

- Every call has a per-step timeout (the bus answers `timeout` when no agent replies in time).
- A timeout or an unreachable bus raises `TransientAgentError`: the step's LangGraph
  `RetryPolicy` (`AGENT_RETRY`) retries it inside the run; once those attempts are spent
  the error reaches the run worker, which (it is a `TransientRunError`) retries the run
  later from its last checkpoint.
- An `error` or `rejected` answer raises `AgentCallFailed` with the agent's message: it is
  the agent's verdict on this request, so retrying the same request would not help; except an error
  the agent classified retryable (`unavailable`: the database it checks fencing tokens against is
  unreachable; `rate_limited`, ...), which raises `TransientAgentError` like a timeout.
- A call whose step is cancelled (the run was cancelled, the step's timeout passed) cancels its
  request: the agent serving it stops the work, kills the commands it started and frees the slot
  (shared/bus/cancels.py).

The bus, the lock manager and the settings the nodes use come from `WorkflowResources`:
the orchestrator service installs its own (its agent runtime's bus); a bare worker process
creates them lazily from the environment (`DEVTOOLS_*`), once per event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from langgraph.config import get_config
from langgraph.types import RetryPolicy
from prometheus_client import Counter, Histogram

from agent_orchestrator.runs.context import NotInRun, current_run
from agent_orchestrator.runs.errors import TransientRunError
from agent_orchestrator.runs.queue import RunQueue
from shared.bus import (
    AgentRequestEvent,
    AgentResponseEvent,
    BusUnavailable,
    ErrorClass,
    EventBus,
    InterAgentEvent,
    InterAgentEventType,
    ResponseStatus,
)
from shared.config import Settings, get_settings
from shared.locks import ResourceLockManager

log = logging.getLogger(__name__)

WORKFLOW_AGENT_ID = "orchestrator"

AGENT_CALLS = Counter(
    "devtools_workflow_agent_calls_total",
    "Agent requests sent by workflow nodes",
    ["agent", "request_type", "outcome"],
)
AGENT_CALL_SECONDS = Histogram(
    "devtools_workflow_agent_call_seconds",
    "Time a workflow node waited for an agent",
    ["agent", "request_type"],
)


class TransientAgentError(TransientRunError):
    """No answer in time, or the bus is unreachable: worth trying again."""


class AgentCallFailed(RuntimeError):
    """The agent answered `error` or `rejected`: the request itself cannot succeed."""

    def __init__(self, agent: str, request_type: str, status: str, message: str) -> None:
        super().__init__(f"{agent} {request_type} {status}: {message}")
        self.agent = agent
        self.request_type = request_type
        self.status = status
        self.message = message


# Steps retried inside the run: three attempts, 1 s then 2 s apart, only for transient failures.
AGENT_RETRY = RetryPolicy(
    initial_interval=1.0, backoff_factor=2.0, max_attempts=3, retry_on=TransientAgentError
)


@dataclass
class WorkflowResources:
    settings: Settings
    bus: EventBus
    owns_bus: bool
    locks: ResourceLockManager | None = None
    _locks_guard: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def lock_manager(self, database_url: str) -> ResourceLockManager:
        async with self._locks_guard:
            if self.locks is None:
                self.locks = await ResourceLockManager.connect(database_url, name="devtools-workflow-locks")
            return self.locks

    async def close(self) -> None:
        if self.locks is not None:
            await self.locks.close()
            self.locks = None
        if self.owns_bus:
            await self.bus.close()


# One set per event loop: a bus or pool cannot be shared across loops.
_resources: dict[int, WorkflowResources] = {}


def install_resources(settings: Settings, bus: EventBus) -> WorkflowResources:
    """Use this bus (the orchestrator service's own) for the nodes run on the current loop."""
    resources = WorkflowResources(settings, bus, owns_bus=False)
    _resources[id(asyncio.get_running_loop())] = resources
    return resources


def workflow_resources() -> WorkflowResources:
    key = id(asyncio.get_running_loop())
    resources = _resources.get(key)
    if resources is None:
        settings = get_settings()
        bus = EventBus.from_settings(settings, agent_id=WORKFLOW_AGENT_ID)
        resources = WorkflowResources(settings, bus, owns_bus=True)
        _resources[key] = resources
    return resources


async def close_resources() -> None:
    """Close the current loop's resources (their bus only if it was created here)."""
    resources = _resources.pop(id(asyncio.get_running_loop()), None)
    if resources is not None:
        await resources.close()


async def call_agent(
    agent: str,
    request_type: str,
    payload: dict[str, Any],
    *,
    timeout: float,  # noqa: ASYNC109 - the per-step deadline is the point of this helper
    correlation_id: str | None = None,
    capability: str | None = None,
) -> dict[str, Any]:
    """Send one request to `agent` (or any agent with `capability`) and return its result dict."""
    bus = workflow_resources().bus
    event = AgentRequestEvent(
        source_agent=WORKFLOW_AGENT_ID,
        target_agent="any" if capability else agent,
        required_capability=capability,
        request_type=request_type,
        payload=payload,
        timeout_seconds=timeout,
        correlation_id=correlation_id,
    )
    started = time.monotonic()
    try:
        response: AgentResponseEvent = await bus.request_agent(
            event, timeout=timeout, on_resend=_resend_reporter(agent, request_type)
        )
    except asyncio.CancelledError:
        # The run was cancelled or the step timed out: the agent must stop the work too.
        await asyncio.shield(_cancel_request(bus, event, agent, request_type))
        raise
    except BusUnavailable as exc:
        AGENT_CALLS.labels(agent, request_type, "bus_unavailable").inc()
        raise TransientAgentError(f"{agent} {request_type}: event bus unavailable: {exc}") from exc
    finally:
        AGENT_CALL_SECONDS.labels(agent, request_type).observe(time.monotonic() - started)
    AGENT_CALLS.labels(agent, request_type, response.status.value).inc()
    if response.status == ResponseStatus.TIMEOUT:
        raise TransientAgentError(
            f"{agent} {request_type}: no answer within {timeout:g}s ({response.error or 'timeout'})"
        )
    if response.status is ResponseStatus.ERROR and _worth_retrying(response):
        raise TransientAgentError(
            f"{agent} {request_type}: {response.error_code}: {response.error or 'retryable error'}"
        )
    if response.status in (ResponseStatus.ERROR, ResponseStatus.REJECTED):
        raise AgentCallFailed(agent, request_type, response.status.value, response.error or "no message")
    log.info(
        "agent answered",
        extra={
            "agent": agent,
            "request_type": request_type,
            "correlation_id": correlation_id,
            "ms": round(response.processing_time_ms, 1),
        },
    )
    return response.result or {}


def _resend_reporter(agent: str, request_type: str) -> Callable[[str], Awaitable[None]] | None:
    """Inside a run: a run event for each time Redis lost the request and the bus sent it again."""
    try:
        run = current_run()
    except NotInRun:
        return None
    node = get_config().get("metadata", {}).get("langgraph_node") if _in_graph() else None

    async def report(request_id: str) -> None:
        data = {"agent": agent, "request_type": request_type, "request_id": request_id}
        data["reason"] = "Redis lost the queued request (restart without persistence or stream deleted)"
        await RunQueue(run.pool).add_event(run.run_id, "request_resent", node, data)

    return report


def _in_graph() -> bool:
    try:
        get_config()
    except RuntimeError:
        return False
    return True


def _worth_retrying(response: AgentResponseEvent) -> bool:
    """An error the agent declared retryable (a dependency unreachable, a rate limit), as opposed to
    its verdict on the request or a crash nobody classified (`internal`), which retrying would repeat."""
    return response.error_class is ErrorClass.RETRYABLE and response.error_code not in (None, "internal")


async def _cancel_request(bus: EventBus, event: AgentRequestEvent, agent: str, request_type: str) -> None:
    try:
        await bus.cancel_request(
            event.request_id,
            "the workflow step stopped waiting (run cancelled or step timed out)",
            event.timeout_seconds,
        )
        AGENT_CALLS.labels(agent, request_type, "cancelled").inc()
    except Exception as exc:  # Redis down: the agent's handler still stops at the request's expiry
        log.warning("could not cancel the request", extra={"request_id": event.request_id, "error": str(exc)})


async def emit_event(kind: InterAgentEventType, payload: dict[str, Any], correlation_id: str) -> None:
    """Broadcast a workflow fact (approval_required, approved, resource.locked, ...)."""
    event = InterAgentEvent(
        event_type=kind, source_agent=WORKFLOW_AGENT_ID, payload=payload, correlation_id=correlation_id
    )
    await workflow_resources().bus.emit(event)
