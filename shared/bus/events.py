"""The bus protocol: requests, responses and broadcast events between agents (JSON on the wire).

Documented in docs/EVENT_PROTOCOL.md. Every model rejects unknown fields so that a typo in a
producer shows up as a validation error naming the field instead of a silently ignored key.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ANY_AGENT = "any"


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class RequestPriority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


# Served first to last: urgent and high requests are taken before normal and low ones.
PRIORITY_ORDER: tuple[RequestPriority, ...] = (
    RequestPriority.URGENT,
    RequestPriority.HIGH,
    RequestPriority.NORMAL,
    RequestPriority.LOW,
)


class ResponseStatus(StrEnum):
    SUCCESS = "success"
    ERROR = "error"
    TIMEOUT = "timeout"
    REJECTED = "rejected"
    PARTIAL = "partial"


class ErrorClass(StrEnum):
    """What a failed request's caller should do: try again later, or not at all."""

    RETRYABLE = "retryable"  # timeout, agent gone, transient infrastructure error, rate limit
    PERMANENT = "permanent"  # invalid input, permission refused, the repository under work is broken


class InterAgentEventType(StrEnum):
    TASK_DELEGATED = "task.delegated"
    TASK_COMPLETED = "task_completed"
    TASK_FAILED = "task_failed"
    TICKET_PHASE_CHANGED = "ticket.phase_changed"
    COORDINATION_DECIDED = "coordination.decided"
    RESOURCE_LOCKED = "resource.locked"
    RESOURCE_UNLOCKED = "resource.unlocked"
    AGENT_STATUS_CHANGE = "agent.status_change"
    WORKFLOW_CHECKPOINT = "workflow.checkpoint"
    APPROVAL_REQUIRED = "approval_required"
    APPROVED = "approved"
    REJECTED = "rejected"
    AGENT_ERROR = "agent_error"
    AGENT_COLLAB_STARTED = "agent.collab.started"
    AGENT_MESSAGE_SENT = "agent.message.sent"
    AGENT_HANDOFF_REQUESTED = "agent.handoff.requested"
    AGENT_HANDOFF_ACCEPTED = "agent.handoff.accepted"
    AGENT_HANDOFF_DECLINED = "agent.handoff.declined"
    AGENT_HANDOFF_TO_PERSON = "agent.handoff.to_person"


class _WireModel(BaseModel):
    model_config = ConfigDict(extra="forbid", use_enum_values=False, validate_assignment=False)

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, data: str | bytes) -> Self:
        return cls.model_validate_json(data)


def _aware(value: datetime) -> datetime:
    # Naive timestamps are taken as UTC so that comparisons with utc_now() never raise.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# A request waits at most a day: longer work is a run or a task, which have their own deadlines.
MAX_REQUEST_TIMEOUT_SECONDS = 86400.0
# How far ahead of this host's clock a sender's may be.
MAX_CLOCK_SKEW_SECONDS = 300.0


class AgentRequestEvent(_WireModel):
    """Ask one agent (by id) or any agent with a capability to do something."""

    request_id: str = Field(default_factory=new_id, min_length=1)
    source_agent: str = Field(min_length=1)
    target_agent: str = Field(min_length=1, description="an agent id, or 'any' with required_capability")
    required_capability: str | None = None
    request_type: str = Field(min_length=1)
    payload: dict[str, Any] = Field(default_factory=dict)
    priority: RequestPriority = RequestPriority.NORMAL
    timeout_seconds: float = Field(default=30.0, gt=0, le=MAX_REQUEST_TIMEOUT_SECONDS)
    correlation_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utc_now)
    expires_at: datetime | None = None
    # Stream the answer goes to; set by the bus when the request is sent (None: nobody waits).
    reply_to: str | None = None

    @field_validator("created_at", "expires_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else _aware(value)

    @model_validator(mode="after")
    def _routing_and_expiry(self) -> Self:
        if self.target_agent == ANY_AGENT and not self.required_capability:
            raise ValueError("required_capability: needed when target_agent is 'any'")
        if self.created_at > utc_now() + timedelta(seconds=MAX_CLOCK_SKEW_SECONDS):
            # A request from the future would never expire: its sender's clock (or its author) is wrong.
            raise ValueError(f"created_at: more than {MAX_CLOCK_SKEW_SECONDS:g} s in the future")
        if self.expires_at is None:
            self.expires_at = self.created_at + timedelta(seconds=self.timeout_seconds)
        return self

    def is_expired(self, now: datetime | None = None) -> bool:
        assert self.expires_at is not None
        return (now or utc_now()) >= self.expires_at

    def seconds_left(self, now: datetime | None = None) -> float:
        assert self.expires_at is not None
        return (self.expires_at - (now or utc_now())).total_seconds()


class AgentResponseEvent(_WireModel):
    """The answer to one AgentRequestEvent (matched by request_id)."""

    response_id: str = Field(default_factory=new_id, min_length=1)
    request_id: str = Field(min_length=1)
    source_agent: str = Field(min_length=1)
    target_agent: str = Field(min_length=1)
    status: ResponseStatus
    result: dict[str, Any] | None = None
    error: str | None = None
    # Structured error: a stable code (snake_case) and its class, so callers decide on retries
    # without reading the message; retry_after_seconds honours an agent's rate limit.
    error_code: str | None = Field(default=None, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    error_class: ErrorClass | None = None
    retry_after_seconds: float | None = Field(default=None, ge=0, le=86400)
    processing_time_ms: float = Field(default=0.0, ge=0)
    created_at: datetime = Field(default_factory=utc_now)

    @model_validator(mode="after")
    def _default_error_class(self) -> Self:
        # Timeouts and rejections have one meaning whoever produced them.
        if self.error_class is None and self.status is ResponseStatus.TIMEOUT:
            self.error_class, self.error_code = ErrorClass.RETRYABLE, self.error_code or "timeout"
        elif self.error_class is None and self.status is ResponseStatus.REJECTED:
            self.error_class, self.error_code = ErrorClass.PERMANENT, self.error_code or "rejected"
        return self

    @classmethod
    def for_request(
        cls,
        request: AgentRequestEvent,
        source_agent: str,
        status: ResponseStatus,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        processing_time_ms: float = 0.0,
        *,
        error_code: str | None = None,
        error_class: ErrorClass | None = None,
        retry_after_seconds: float | None = None,
    ) -> AgentResponseEvent:
        return cls(
            request_id=request.request_id,
            source_agent=source_agent,
            target_agent=request.source_agent,
            status=status,
            result=result,
            error=error,
            error_code=error_code,
            error_class=error_class,
            retry_after_seconds=retry_after_seconds,
            processing_time_ms=max(processing_time_ms, 0.0),
        )


class InterAgentEvent(_WireModel):
    """A broadcast fact (task done, lock taken, approval needed...) for every interested subscriber group."""

    event_id: str = Field(default_factory=new_id, min_length=1)
    event_type: InterAgentEventType
    source_agent: str = Field(min_length=1)
    payload: dict[str, Any] = Field(default_factory=dict)
    correlation_id: str | None = None
    created_at: datetime = Field(default_factory=utc_now)

    @field_validator("created_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return _aware(value)
