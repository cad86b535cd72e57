"""What a thread, a message and a handoff are, as the store keeps them (config/state/100_collaboration.sql),
and what creates one. The bounds are the database's checks, so bad input is refused with the field
named before any SQL runs."""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]*$")]
MAX_ATTACHMENTS = 50
MAX_ATTACHMENTS_BYTES = 64 * 1024
MAX_HANDOFF_CONTEXT_BYTES = 128 * 1024


class ParticipantKind(StrEnum):
    AGENT = "agent"
    PERSON = "person"


class MessageKind(StrEnum):
    COMMENT = "comment"
    QUESTION = "question"
    ANSWER = "answer"
    FINDING = "finding"
    DECISION = "decision"


class ThreadStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class HandoffStatus(StrEnum):
    OFFERED = "offered"  # to agents, one at a time, best fit first
    AWAITING_PERSON = "awaiting_person"  # nobody accepted in time, or no agent is left
    ACCEPTED = "accepted"
    DECLINED = "declined"  # by a person: final


# -- attachments: structured, so a UI and an agent can act on them ------------------------------


class FileLine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["file_line"] = "file_line"
    path: str = Field(min_length=1, max_length=1000)
    line: int | None = Field(None, ge=1, le=10_000_000)
    end_line: int | None = Field(None, ge=1, le=10_000_000)
    rule: str | None = Field(None, max_length=200)


class TestFailure(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["test_failure"] = "test_failure"
    test: str = Field(min_length=1, max_length=1000)
    message: str = Field("", max_length=8000)
    path: str | None = Field(None, max_length=1000)
    line: int | None = Field(None, ge=1, le=10_000_000)


class DiffHunk(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["diff_hunk"] = "diff_hunk"
    path: str = Field(min_length=1, max_length=1000)
    hunk: str = Field(min_length=1, max_length=16_000)


class Link(BaseModel):
    """Anything else worth pointing at: a run, a release, a health report (`data`, bounded)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["link"] = "link"
    label: str = Field(min_length=1, max_length=200)
    ref: str = Field("", max_length=1000)
    data: dict[str, Any] = Field(default_factory=dict)


Attachment = Annotated[FileLine | TestFailure | DiffHunk | Link, Field(discriminator="type")]


def _json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), default=str).encode())


class NewThread(BaseModel):
    model_config = ConfigDict(extra="forbid")
    topic: str = Field(min_length=1, max_length=300)
    ticket_id: UUID | None = None
    task_id: UUID | None = None
    run_id: UUID | None = None
    participants: list[Participant] = Field(default_factory=list, max_length=50)

    @field_validator("topic")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class Participant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: NAME
    kind: ParticipantKind = ParticipantKind.AGENT


class NewMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: MessageKind = MessageKind.COMMENT
    body: str = Field(min_length=1, max_length=20_000)
    attachments: list[Attachment] = Field(default_factory=list, max_length=MAX_ATTACHMENTS)
    reply_to: int | None = Field(None, ge=1, le=2**63 - 1)
    # The same key posts once: a client that retries after a lost answer adds nothing.
    client_key: str | None = Field(None, min_length=1, max_length=200)

    @field_validator("body")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    @model_validator(mode="after")
    def _bounded(self) -> NewMessage:
        size = _json_size([a.model_dump(mode="json") for a in self.attachments])
        if size > MAX_ATTACHMENTS_BYTES:
            raise ValueError(f"attachments: {size} bytes, more than {MAX_ATTACHMENTS_BYTES}")
        return self


class NewHandoff(BaseModel):
    model_config = ConfigDict(extra="forbid")
    thread_id: UUID | None = Field(None, description="the thread it belongs to; without it, one is opened")
    ticket_id: UUID | None = None
    task_id: UUID | None = None
    to_capability: str | None = Field(None, min_length=1, max_length=100)
    to_agent: NAME | None = None
    request_type: str = Field(min_length=1, max_length=100, pattern=r"^[A-Z][A-Z0-9_]*$")
    reason: str = Field(min_length=1, max_length=4000)
    context: dict[str, Any] = Field(default_factory=dict)
    person: NAME | None = Field(
        None, description="who decides when no agent accepts (default: the ticket's owner)"
    )
    timeout_seconds: float = Field(600.0, ge=1, le=604_800)

    @model_validator(mode="after")
    def _target(self) -> NewHandoff:
        if self.to_capability is None and self.to_agent is None:
            raise ValueError("to_capability: give a capability or an agent (to_agent) to hand over to")
        if self.thread_id is None and self.ticket_id is None and self.task_id is None:
            raise ValueError("thread_id: give the thread, or a ticket or task to open one about")
        size = _json_size(self.context)
        if size > MAX_HANDOFF_CONTEXT_BYTES:
            raise ValueError(f"context: {size} bytes, more than {MAX_HANDOFF_CONTEXT_BYTES}")
        return self


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: str | None = Field(None, max_length=4000)


# -- rows ----------------------------------------------------------------------------------------


class Thread(BaseModel):
    id: UUID
    topic: str
    ticket_id: UUID | None
    task_id: UUID | None
    run_id: UUID | None
    status: ThreadStatus
    origin: str | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    participants: list[Participant] = Field(default_factory=list)


class Message(BaseModel):
    id: int
    thread_id: UUID
    author: str
    author_kind: ParticipantKind
    kind: MessageKind
    body: str
    attachments: list[dict[str, Any]]
    reply_to: int | None
    client_key: str | None
    created_at: datetime


class Handoff(BaseModel):
    id: UUID
    thread_id: UUID
    ticket_id: UUID | None
    task_id: UUID | None
    from_name: str
    from_kind: ParticipantKind
    to_capability: str | None
    to_agent: str | None
    request_type: str
    reason: str
    context: dict[str, Any]
    person: str
    status: HandoffStatus
    offered_to: str | None
    offers: int
    offer_deadline_at: datetime | None
    declined_by: list[dict[str, Any]]
    timeout_seconds: float
    deadline_at: datetime
    accepted_by: str | None
    accepted_kind: ParticipantKind | None
    decided_by: str | None
    decision_comment: str | None
    follow_up_task_id: UUID | None
    origin: str | None
    created_at: datetime
    updated_at: datetime
    decided_at: datetime | None


NewThread.model_rebuild()
