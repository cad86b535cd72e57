"""What a phase gate is: the `gate:` block of a phase in a phase file, and what evaluating it yields.

The YAML models are strict like the rest of the phase file (a quoted "80" is not a number, unknown keys
are refused) and frozen, so the one `Gate` a loaded `PhaseMachine` holds is shared by every ticket.
Checks that need the whole phase file (task keys of the phase, known measures, `back_to` naming an
earlier phase) are in `checks.py`; these models check only what a block says on its own.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent_orchestrator.tickets.models import PHASE_NAME_PATTERN

ArtifactKind = Literal["branch", "test_report", "review", "deployment", "document", "build", "plan"]
ARTIFACT_KINDS: tuple[str, ...] = (
    "branch",
    "test_report",
    "review",
    "deployment",
    "document",
    "build",
    "plan",
)
GateVerdict = Literal["passed", "failed", "waiting"]

# The tasks layer's key pattern (agent_orchestrator.tasks KEY_PATTERN), not the phase file's narrower
# one: a phase with `expand` runs a plan's steps, whose ids may hold '-' and '.'.
TaskKey = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
MEASURE_NAME_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"
# Every number a gate compares with is bounded: nothing an agent measures is larger.
Bound = Annotated[float, Field(ge=-1e9, le=1e9)]
Equals = (
    bool
    | Annotated[int, Field(ge=-(10**9), le=10**9)]
    | Bound
    | Annotated[str, Field(min_length=1, max_length=200)]
)
MAX_ROUNDS = 20


class _Yaml(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TasksCriterion(_Yaml):
    """These tasks of the phase succeeded."""

    kind: Literal["tasks"]
    tasks: list[TaskKey] = Field(min_length=1, max_length=50)

    @property
    def name(self) -> str:
        return "tasks"


class ArtifactCriterion(_Yaml):
    """The phase produced an artifact of this kind (from this task, when `task` is given)."""

    kind: Literal["artifact"]
    artifact: ArtifactKind
    task: TaskKey | None = None

    @property
    def name(self) -> str:
        return f"artifact {self.artifact}" + (f" of {self.task}" if self.task else "")


class ThresholdCriterion(_Yaml):
    """A value measured from a task's result is at least `min`, at most `max`, or equals `equals`."""

    kind: Literal["threshold"]
    task: TaskKey
    measure: str = Field(pattern=MEASURE_NAME_PATTERN, max_length=100)
    min: Bound | None = None
    max: Bound | None = None
    equals: Equals | None = None

    @model_validator(mode="after")
    def _one_comparison(self) -> Self:
        if self.min is None and self.max is None and self.equals is None:
            raise ValueError("a threshold needs min, max or equals")
        if self.equals is not None and (self.min is not None or self.max is not None):
            raise ValueError("equals cannot be combined with min or max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        return self

    @property
    def name(self) -> str:
        return f"{self.task}: {self.measure}"

    @property
    def expected(self) -> dict[str, Any]:
        """The comparison as recorded with the result: {"min": 80} / {"equals": "approve"} / ..."""
        return {
            k: v for k, v in (("min", self.min), ("max", self.max), ("equals", self.equals)) if v is not None
        }


class ApprovalCriterion(_Yaml):
    """A person approves: the gate waits (LangGraph `interrupt`) until they answer."""

    kind: Literal["approval"]
    # May hold {ticket.*}, {repo.*} and {context.<task of an earlier phase>} placeholders.
    question: str = Field(min_length=1, max_length=2000)

    @property
    def name(self) -> str:
        return "approval"


Criterion = Annotated[
    TasksCriterion | ArtifactCriterion | ThresholdCriterion | ApprovalCriterion, Field(discriminator="kind")
]


class BackTo(_Yaml):
    """Send the ticket back to an earlier phase with the gate's findings in its context."""

    action: Literal["back_to"]
    phase: str = Field(pattern=PHASE_NAME_PATTERN)
    # A loop needs an end: after this many failures of the gate the ticket is BLOCKED for a person.
    max_rounds: int = Field(3, ge=1, le=MAX_ROUNDS)


class Retry(_Yaml):
    """Run the tasks behind the failed criteria again (flaky tests, a deploy that may work next time)."""

    action: Literal["retry"]
    max_rounds: int = Field(2, ge=1, le=MAX_ROUNDS)


class Block(_Yaml):
    """BLOCKED: a person looks at the reasons and moves the ticket on."""

    action: Literal["block"]


OnFail = Annotated[BackTo | Retry | Block, Field(discriminator="action")]


class Gate(_Yaml):
    """A phase's exit criteria and what a failure does."""

    criteria: list[Criterion] = Field(min_length=1, max_length=50)
    on_fail: OnFail = Block(action="block")

    @property
    def approval(self) -> ApprovalCriterion | None:
        return next((c for c in self.criteria if isinstance(c, ApprovalCriterion)), None)


# -- what evaluation yields ------------------------------------------------------------------------


class Approval(BaseModel):
    """A person's answer to a gate's approval question (the value a resumed `interrupt` carries)."""

    model_config = ConfigDict(extra="forbid")

    approved: bool
    by: str = Field(min_length=1, max_length=100)
    comment: str = Field("", max_length=2000)


class CriterionResult(BaseModel):
    kind: str
    name: str
    passed: bool | None  # None: waits for a person
    measured: Any = None
    expected: Any = None
    detail: str  # in words, e.g. "coverage of changed lines 61.5% < 80%"


class GateResult(BaseModel):
    """One evaluation: every criterion and the verdict (waiting: only the approval is undecided)."""

    verdict: GateVerdict
    criteria: list[CriterionResult]

    @property
    def failed(self) -> list[CriterionResult]:
        return [c for c in self.criteria if c.passed is False]

    @property
    def reasons(self) -> list[str]:
        """The failed criteria, in words, in the order the gate lists them."""
        return [c.detail for c in self.failed]

    @property
    def summary(self) -> str:
        if self.verdict == "passed":
            return f"gate passed: {len(self.criteria)} criteria met"
        if self.verdict == "waiting":
            return "gate waits for approval: " + "; ".join(
                c.detail for c in self.criteria if c.passed is None
            )
        return "gate failed: " + "; ".join(self.reasons)

    def feedback(self, phase: str) -> dict[str, Any]:
        """What a phase the ticket is sent back to learns (its context), JSON."""
        return {
            "phase": phase,
            "verdict": self.verdict,
            "reasons": self.reasons,
            "failed": [c.model_dump(mode="json") for c in self.failed],
        }


class GateResultRecord(GateResult):
    """A phase_gate_results row."""

    id: int
    ticket_id: UUID
    phase: str  # the phase visit label
    evaluated_by: str
    evaluated_at: datetime


class GateArtifact(BaseModel):
    """What a task produced; a phase_gate_artifacts row once recorded (id, ticket_id, created_at set)."""

    kind: ArtifactKind
    phase: str
    task_id: UUID | None
    task_key: str | None
    attempt: int = 0
    agent: str | None = None
    content: Any = None
    reference: str | None = None
    id: int | None = None
    ticket_id: UUID | None = None
    created_at: datetime | None = None


# -- phase visits ----------------------------------------------------------------------------------

_LABEL = re.compile(r"^(?P<phase>[A-Z][A-Z0-9_]{0,49})(?:#(?P<visit>[1-9][0-9]{0,3}))?$")
MAX_VISITS = 9999


def visit_label(phase: str, visit: int = 1) -> str:
    """The label of a ticket's n-th visit of a phase: `INTEGRATION`, then `INTEGRATION#2`, ... The first
    visit keeps the bare name so tickets that never loop read as before."""
    if not re.fullmatch(PHASE_NAME_PATTERN, phase):
        raise ValueError(f"{phase!r} is not a phase name")
    if not 1 <= visit <= MAX_VISITS:
        raise ValueError(f"visit must be 1 to {MAX_VISITS} (got {visit})")
    return phase if visit == 1 else f"{phase}#{visit}"


def parse_visit_label(label: str) -> tuple[str, int]:
    """(phase, visit) of a label made by `visit_label`; ValueError for anything else."""
    match = _LABEL.fullmatch(label)
    if match is None:
        raise ValueError(f"{label!r} is not a phase visit label (PHASE or PHASE#n)")
    return match["phase"], int(match["visit"] or 1)
