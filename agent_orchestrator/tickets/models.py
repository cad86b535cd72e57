"""What a ticket is, what a person may send to create or change one, and a phase move.

Input models refuse unknown fields and check bounds, so bad input fails with an error naming
the field before any SQL runs (the procedures check the same bounds again, for other callers).
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Self
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

PHASE_FILE_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
PHASE_NAME_PATTERN = r"^[A-Z][A-Z0-9_]{0,49}$"
MAX_LABELS = 20
MAX_LIST_LIMIT = 500
MAX_LIST_OFFSET = 1_000_000

# What `git check-ref-format` refuses, approximately: enough that a branch name can never be
# read as an option or break a command line.
_BAD_BRANCH = re.compile(r"(^[-/.])|(\.\.)|(@\{)|(//)|([\s~^:?*\[\\\x00-\x1f\x7f])|([/.]$)|(\.lock$)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Priority(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class TicketStatus(StrEnum):
    """Implied by the phase (the phase file says which): open while work goes on."""

    OPEN = "open"
    BLOCKED = "blocked"
    DONE = "done"
    CANCELLED = "cancelled"

    @property
    def closed(self) -> bool:
        return self in (TicketStatus.DONE, TicketStatus.CANCELLED)


def _branch(value: str) -> str:
    if _BAD_BRANCH.search(value):
        raise ValueError(f"{value!r} is not a valid git branch name")
    return value


def _label(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("a label cannot contain control characters")
    return value


def _labels(values: list[str]) -> list[str]:
    # Duplicates carry no meaning; keeping the first of each keeps the order a person wrote.
    return list(dict.fromkeys(values))


def _absolute_path(value: str) -> str:
    # Agents run in other processes (other working folders): only an absolute path means one thing.
    if not value.startswith("/") or _CONTROL.search(value):
        raise ValueError(f"{value!r} is not an absolute path")
    return value


def _single_line(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must be a single line without control characters")
    return value


Branch = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255), AfterValidator(_branch)
]
Label = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50), AfterValidator(_label)
]
Labels = Annotated[list[Label], Field(max_length=MAX_LABELS), AfterValidator(_labels)]
Title = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300), AfterValidator(_single_line)
]
RepoPath = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=4096),
    AfterValidator(_absolute_path),
]
Description = Annotated[str, StringConstraints(max_length=20000)]
Actor = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), AfterValidator(_single_line)
]


class RepoRef(BaseModel):
    """The repository a ticket works on: a local git repository, the branch to build on, the change."""

    model_config = ConfigDict(extra="forbid")

    path: RepoPath = Field(description="absolute path of a local git repository")
    base_branch: Branch = "main"
    head_branch: Branch | None = Field(
        None, description="the branch holding the change (pushed by a person, or made by feature-dev)"
    )


class TicketCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Title
    description: Description = ""
    repo: RepoRef
    priority: Priority = Priority.MEDIUM
    labels: Labels = Field(default_factory=list)
    created_by: Actor
    phase_file: str = Field("default", pattern=PHASE_FILE_PATTERN, description="config/phases/<name>.yaml")


class TicketUpdate(BaseModel):
    """The fields a person may change; only those given change (head_branch=None clears it)."""

    model_config = ConfigDict(extra="forbid")

    title: Title | None = None
    description: Description | None = None
    priority: Priority | None = None
    labels: Labels | None = None
    head_branch: Branch | None = None

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("nothing to change: give title, description, priority, labels or head_branch")
        for name in self.model_fields_set - {"head_branch"}:
            if getattr(self, name) is None:
                raise ValueError(f"{name}: may not be null (only head_branch can be cleared)")
        return self

    def changes(self) -> dict[str, Any]:
        """The JSON object update_ticket takes: exactly the fields that were given."""
        return self.model_dump(mode="json", exclude_unset=True)


class PhaseTransition(BaseModel):
    """A request to move a ticket to another phase; the phase file decides whether it may."""

    model_config = ConfigDict(extra="forbid")

    to_phase: str = Field(pattern=PHASE_NAME_PATTERN)
    actor: Actor
    reason: str = Field("", max_length=2000)
    expected_version: int | None = Field(None, ge=1, description="None: whatever version is current")


class TicketQuery(BaseModel):
    """Filters of a ticket listing (all optional, combined with AND), newest first."""

    model_config = ConfigDict(extra="forbid")

    status: TicketStatus | None = None
    phase: str | None = Field(None, pattern=PHASE_NAME_PATTERN)
    priority: Priority | None = None
    label: Label | None = None
    created_by: Actor | None = None
    limit: int = Field(50, ge=1, le=MAX_LIST_LIMIT)
    offset: int = Field(0, ge=0, le=MAX_LIST_OFFSET)


class Ticket(BaseModel):
    """A ticket as the tickets table stores it."""

    id: UUID
    title: str
    description: str
    repo_path: str
    base_branch: str
    head_branch: str | None
    priority: Priority
    labels: list[str]
    created_by: str
    phase: str
    status: TicketStatus
    phase_file: str
    context: dict[str, Any]
    run_id: UUID | None
    version: int
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None

    @property
    def repo(self) -> RepoRef:
        # Stored values were checked on the way in; no second validation on the way out.
        return RepoRef.model_construct(
            path=self.repo_path, base_branch=self.base_branch, head_branch=self.head_branch
        )


class PhaseHistoryEntry(BaseModel):
    """One move of a ticket: from_phase is None for the ticket's first phase."""

    id: int
    ticket_id: UUID
    from_phase: str | None
    to_phase: str
    actor: str
    reason: str
    at: datetime
