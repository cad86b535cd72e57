"""What a task is, as the store keeps it (config/state/080_tasks.sql), and what creates one.

The bounds of `TaskSpec` are the same as the database's checks, so a bad spec is refused in Python
with the field named before any SQL runs.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.bus import ErrorClass  # the bus's error class is the retry decision's only input

# A template's name within a phase: also what `depends_on` refers to.
KEY_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
MAX_PAYLOAD_BYTES = 256 * 1024
MAX_DEPENDENCIES = 100
MAX_BATCH = 500
MAX_LOCKS = 5
# "<task key>.<field>[.<field>...]": where a bound payload field takes its value from.
BINDING_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}\.[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$"
MAX_BINDINGS = 50


class TaskStatus(StrEnum):
    PENDING = "pending"
    READY = "ready"
    ASSIGNED = "assigned"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    BLOCKED = "blocked"

    @property
    def final(self) -> bool:
        """Nothing changes it any more without a person's retry (blocked included)."""
        return self in FINAL_STATUSES

    @property
    def active(self) -> bool:
        """An attempt holds it (a dispatcher or an agent): it counts against the agent's capacity."""
        return self in ACTIVE_STATUSES


FINAL_STATUSES = frozenset(
    {TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.TIMED_OUT, TaskStatus.CANCELLED, TaskStatus.BLOCKED}
)
ACTIVE_STATUSES = frozenset({TaskStatus.ASSIGNED, TaskStatus.RUNNING})


class ErrorKind(StrEnum):
    """Why an attempt failed, as the agent or the dispatcher knows it from the failure's type (never
    from its message text). Each kind has one class."""

    TIMEOUT = "timeout"
    AGENT_GONE = "agent_gone"
    INFRASTRUCTURE = "infrastructure"  # a transient infrastructure error (database, bus, network)
    RATE_LIMITED = "rate_limited"  # retried no earlier than its Retry-After
    INVALID_INPUT = "invalid_input"
    PERMISSION_DENIED = "permission_denied"  # permission or authentication refused
    BUILD_ERROR = "build_error"  # a build or syntax error in the repository under work

    @property
    def error_class(self) -> ErrorClass:
        return ErrorClass.PERMANENT if self in PERMANENT_KINDS else ErrorClass.RETRYABLE


PERMANENT_KINDS = frozenset({ErrorKind.INVALID_INPUT, ErrorKind.PERMISSION_DENIED, ErrorKind.BUILD_ERROR})


class TaskSpec(BaseModel):
    """One task a phase asks for. `depends_on` lists keys of the same batch or ids of existing
    tasks of the same ticket."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(pattern=KEY_PATTERN)
    title: str = Field(default="", max_length=300)
    capability: str = Field(min_length=1, max_length=100)
    request_type: str = Field(min_length=1, max_length=100)
    payload: dict[str, Any] = Field(default_factory=dict)
    priority: int = Field(default=0, ge=-1000, le=1000)
    depends_on: list[str] = Field(default_factory=list, max_length=MAX_DEPENDENCIES)
    timeout_seconds: float = Field(default=600.0, ge=1, le=86400)
    max_attempts: int = Field(default=3, ge=1, le=20)
    # payload field -> "<task key>.<result field>[...]" of an earlier task of the same phase, filled in
    # when the task is sent (a DECOMPOSE_TASK plan's bindings; see tasks/plans.py).
    bindings: dict[
        Annotated[str, Field(min_length=1, max_length=100)], Annotated[str, Field(pattern=BINDING_PATTERN)]
    ] = Field(default_factory=dict, max_length=MAX_BINDINGS)
    # Resource lock ids the dispatcher must hold while the task runs (the store only keeps them).
    locks: list[Annotated[str, Field(min_length=1, max_length=300)]] = Field(
        default_factory=list, max_length=MAX_LOCKS
    )

    @field_validator("capability", "request_type")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    @field_validator("payload")
    @classmethod
    def _payload_size(cls, value: dict[str, Any]) -> dict[str, Any]:
        # The database measures its jsonb text; compact JSON is a close, slightly smaller bound.
        size = len(json.dumps(value, separators=(",", ":"), default=str).encode())
        if size > MAX_PAYLOAD_BYTES:
            raise ValueError(f"payload is {size} bytes, more than {MAX_PAYLOAD_BYTES}")
        return value


class Task(BaseModel):
    """A row of `tasks`."""

    id: UUID
    ticket_id: UUID
    phase: str
    key: str
    title: str
    capability: str
    request_type: str
    payload: dict[str, Any]
    priority: int
    depends_on: list[UUID]
    locks: list[str]
    bindings: dict[str, str] = Field(default_factory=dict)
    status: TaskStatus
    attempt: int
    failures: int
    max_attempts: int
    timeout_seconds: float
    not_before: datetime
    claimed_by: str | None
    assigned_agent: str | None
    lease_expires_at: datetime | None
    deadline_at: datetime | None
    cancel_requested: bool
    result: Any | None
    error: str | None
    error_class: ErrorClass | None
    error_kind: str | None  # an ErrorKind value, or a kind a newer agent reports
    blocked_reason: str | None
    wait_reason: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    ready_at: datetime | None = None  # when it last became claimable


class AssignOutcome(StrEnum):
    ASSIGNED = "assigned"
    AT_CAPACITY = "at_capacity"


class AgentLoad(BaseModel):
    """Tasks an agent holds now (assigned or running)."""

    agent: str
    assigned: int
    running: int

    @property
    def total(self) -> int:
        return self.assigned + self.running


class PhaseSummary(BaseModel):
    """How a ticket's phase stands: the ticket workflow's test for "this phase's tasks are done"."""

    ticket_id: UUID
    phase: str | None
    total: int
    counts: dict[TaskStatus, int]
    all_final: bool
    all_succeeded: bool
