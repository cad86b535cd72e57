"""What a run is, as the queue stores it."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import BaseModel


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    INTERRUPTED = "interrupted"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED


FINISHED = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})
DEFAULT_QUEUE = "workflows"


class Run(BaseModel):
    id: UUID
    queue: str
    workflow: str
    input: dict[str, Any]
    status: RunStatus
    priority: int
    not_before: datetime
    attempts: int
    failures: int
    max_attempts: int
    lease_owner: str | None
    lease_expires_at: datetime | None
    cancel_requested: bool
    interrupt: Any | None
    resume: Any | None
    result: Any | None
    error: str | None
    created_by: str | None
    parent_run_id: UUID | None
    forked_from_checkpoint: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class RunEvent(BaseModel):
    id: int
    run_id: UUID
    kind: str
    node: str | None
    data: dict[str, Any]
    created_at: datetime
