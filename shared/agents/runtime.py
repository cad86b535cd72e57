"""Declaring an agent: its id, capabilities, capacity and one handler per request type.

    agent = AgentDefinition(agent_id="code-review", name="Code review",
                            capabilities=[Capability("code_review", "Reviews a diff")],
                            capacity=4, port_setting="code_review_port")

    @agent.handler("REVIEW_CODE", payload_model=ReviewPayload)
    async def review(payload: ReviewPayload, ctx: RequestContext) -> dict: ...

    # services/code_review/__main__.py
    run_agent(agent)

The service side (HTTP app, bus consumption, registration, drain) is in agent_service.py;
this module turns one AgentRequestEvent into one AgentResponseEvent, whichever way it came.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from prometheus_client import Counter, Histogram
from pydantic import BaseModel, ValidationError

from shared.bus import (
    ANY_AGENT,
    AgentError,
    AgentRequestEvent,
    AgentResponseEvent,
    ErrorClass,
    ErrorInfo,
    ResponseStatus,
    classify,
)
from shared.http import validation_fields

log = logging.getLogger(__name__)

AGENT_REQUESTS = Counter(
    "devtools_agent_requests_total", "Agent requests handled", ["agent", "request_type", "via", "status"]
)
AGENT_REQUEST_SECONDS = Histogram(
    "devtools_agent_request_duration_seconds", "Agent request handling time", ["agent", "request_type"]
)

Via = Literal["http", "bus"]
# Answered by every agent (shared/agents/collaboration.py): messages of its threads, handoff offers.
COLLABORATION_TYPES = frozenset({"COLLAB_MESSAGE", "HANDOFF_OFFER"})
Handler = Callable[[Any, "RequestContext"], Awaitable[Any]]


@dataclass(frozen=True)
class Capability:
    name: str
    description: str = ""
    version: str = "1.0"

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "description": self.description, "version": self.version}


@dataclass
class RequestContext:
    """What a handler gets besides its payload."""

    request: AgentRequestEvent
    agent_id: str
    via: Via
    # Set by the service: the bus (to ask other agents), the registry client, settings, extras.
    resources: dict[str, Any] = field(default_factory=dict)

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        return logging.LoggerAdapter(
            log, {"agent_id": self.agent_id, "request_id": self.request.request_id, "via": self.via}
        )

    @property
    def seconds_left(self) -> float:
        return self.request.seconds_left()


@dataclass(frozen=True)
class HandlerSpec:
    request_type: str
    func: Handler
    payload_model: type[BaseModel] | None


class SharedCapacity:
    """The agent's capacity, shared by the HTTP and the bus paths: in-flight work never exceeds it.

    HTTP callers get a slot at once or a 503 (they can retry elsewhere); bus requests wait for one,
    in arrival order, since their entry stays leased to this replica until answered.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity: must be at least 1")
        self.capacity = capacity
        self._slots = asyncio.Semaphore(capacity)
        self.in_use = 0
        self.waiting = 0

    @property
    def full(self) -> bool:
        return self.in_use >= self.capacity

    async def try_acquire(self) -> bool:
        """Take a slot now if one is free and no bus request is already waiting for it."""
        if self._slots.locked():
            return False
        # Not locked: acquire() takes the slot without suspending, so nothing slips in between.
        await self._slots.acquire()
        self.in_use += 1
        return True

    async def acquire(self) -> None:
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.in_use += 1

    def release(self) -> None:
        self.in_use -= 1
        self._slots.release()


class RequestRejected(Exception):
    """The request cannot be handled here (unknown type, wrong target, bad payload)."""

    def __init__(self, http_status: int, message: str, fields: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.message = message
        self.fields = fields or []


@dataclass
class AgentDefinition:
    agent_id: str
    name: str
    capabilities: list[Capability]
    capacity: int = 4
    # Name of the shared.config.Settings field holding this agent's port (e.g. "code_review_port").
    port_setting: str | None = None
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    handlers: dict[str, HandlerSpec] = field(default_factory=dict)
    startup_hooks: list[Callable[[dict[str, Any]], Awaitable[None]]] = field(default_factory=list)
    shutdown_hooks: list[Callable[[dict[str, Any]], Awaitable[None]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ValueError("capacity: must be at least 1")
        if not self.agent_id or self.agent_id == ANY_AGENT:
            raise ValueError(f"agent_id: {self.agent_id!r} is not a usable agent id")

    @property
    def capability_names(self) -> list[str]:
        return [c.name for c in self.capabilities]

    def handler(
        self, request_type: str, *, payload_model: type[BaseModel] | None = None
    ) -> Callable[[Handler], Handler]:
        """Register the coroutine serving one request type; its payload is validated by payload_model."""

        def register(func: Handler) -> Handler:
            if request_type in self.handlers:
                raise ValueError(f"request_type: {request_type!r} already has a handler")
            self.handlers[request_type] = HandlerSpec(request_type, func, payload_model)
            return func

        return register

    def on_startup(self, func: Callable[[dict[str, Any]], Awaitable[None]]) -> Callable[..., Any]:
        """Run at service start with the resources dict (bus, registry, settings); may add entries."""
        self.startup_hooks.append(func)
        return func

    def on_shutdown(self, func: Callable[[dict[str, Any]], Awaitable[None]]) -> Callable[..., Any]:
        self.shutdown_hooks.append(func)
        return func

    @property
    def supported_types(self) -> list[str]:
        """The request types of the agent's own work; every agent also answers the collaboration
        requests (shared/agents/collaboration.py), which are not listed."""
        return sorted(t for t in self.handlers if t not in COLLABORATION_TYPES)


def check_request(agent: AgentDefinition, request: AgentRequestEvent, bus_agent_id: str) -> HandlerSpec:
    """The handler for this request, or RequestRejected saying why not (400 / 422)."""
    if request.target_agent not in (bus_agent_id, agent.agent_id, ANY_AGENT):
        raise RequestRejected(400, f"target_agent {request.target_agent!r}: this is agent {bus_agent_id!r}")
    if request.required_capability and request.required_capability not in agent.capability_names:
        raise RequestRejected(
            400,
            f"required_capability {request.required_capability!r} is not offered here; "
            f"capabilities: {', '.join(agent.capability_names)}",
        )
    spec = agent.handlers.get(request.request_type)
    if spec is None:
        raise RequestRejected(
            400,
            f"unknown request_type {request.request_type!r}; supported: {', '.join(agent.supported_types)}",
        )
    return spec


def parse_payload(spec: HandlerSpec, request: AgentRequestEvent) -> Any:
    """The payload as the handler's model reads it. Keys starting with '_' are the platform's (a
    handoff's `_handoff`: its thread, reason and a person's answer), not the handler's fields: they are
    left out of the model's validation and stay readable in `ctx.request.payload`."""
    if spec.payload_model is None:
        return request.payload
    own = {k: v for k, v in request.payload.items() if not k.startswith("_")}
    try:
        return spec.payload_model.model_validate(own)
    except ValidationError as exc:
        fields = [{**f, "field": f"payload.{f['field']}"} for f in validation_fields(exc.errors())]
        names = ", ".join(f["field"] for f in fields)
        raise RequestRejected(422, f"invalid payload: {names}", fields) from None


def _result_dict(outcome: Any) -> dict[str, Any] | None:
    if outcome is None:
        return {}
    if isinstance(outcome, BaseModel):
        return outcome.model_dump(mode="json")
    if isinstance(outcome, dict):
        return outcome
    return {"value": outcome}


async def execute(
    agent: AgentDefinition, spec: HandlerSpec, payload: Any, ctx: RequestContext
) -> AgentResponseEvent:
    """Run the handler; an exception or a timeout becomes a response, never an HTTP 500."""
    request = ctx.request
    started = time.perf_counter()
    status = ResponseStatus.SUCCESS
    result: dict[str, Any] | None = None
    error: str | None = None
    info: ErrorInfo | None = None
    try:
        outcome = await asyncio.wait_for(spec.func(payload, ctx), timeout=max(request.seconds_left(), 0.001))
        if isinstance(outcome, AgentResponseEvent):
            outcome_response = outcome
        else:
            outcome_response = None
            result = _result_dict(outcome)
    except TimeoutError:
        outcome_response = None
        status, error = ResponseStatus.TIMEOUT, f"handler ran past the request's {request.timeout_seconds}s"
    except Exception as exc:  # the caller gets the message and its class; the log gets the traceback
        outcome_response = None
        status, error, info = ResponseStatus.ERROR, f"{type(exc).__name__}: {exc}", classify(exc)
        if isinstance(exc, AgentError):  # a failure the handler understood: no traceback needed
            ctx.logger.warning("handler failed: %s", exc, extra={"request_type": request.request_type})
        else:
            ctx.logger.exception("handler failed", extra={"request_type": request.request_type})
    elapsed = time.perf_counter() - started
    AGENT_REQUEST_SECONDS.labels(agent.agent_id, request.request_type).observe(elapsed)
    response = outcome_response or AgentResponseEvent.for_request(
        request,
        ctx.agent_id,
        status,
        result=result,
        error=error,
        processing_time_ms=elapsed * 1000,
        error_code=info.code if info else None,
        error_class=info.error_class if info else None,
        retry_after_seconds=info.retry_after_seconds if info else None,
    )
    AGENT_REQUESTS.labels(agent.agent_id, request.request_type, ctx.via, response.status.value).inc()
    return response


def rejection_response(
    request: AgentRequestEvent, agent_id: str, rejected: RequestRejected, via: Via
) -> AgentResponseEvent:
    """Over the bus there is no HTTP status: an unknown type is `rejected`, a bad payload an `error`."""
    status = ResponseStatus.ERROR if rejected.http_status == 422 else ResponseStatus.REJECTED
    AGENT_REQUESTS.labels(agent_id, request.request_type, via, status.value).inc()
    code = "invalid_input" if rejected.http_status == 422 else "rejected"
    return AgentResponseEvent.for_request(
        request, agent_id, status, error=rejected.message, error_code=code, error_class=ErrorClass.PERMANENT
    )
