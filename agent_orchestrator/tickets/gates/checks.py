"""Load-time checks of a phase's `gate:` block against the rest of its phase file.

The structure (keys, types, bounds, min/max/equals present) is the models' business; what needs the
file is here: criteria naming tasks the phase does not declare, unknown measures or measures of
another request type's result, comparisons the measure cannot make, `on_fail.back_to` naming anything
but an earlier open phase, approval questions with placeholders that can never resolve. Each failure
is a PhaseFileError naming the file and the key path (`phases[2].gate.criteria[1].measure`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent_orchestrator.tickets.errors import PhaseFileError, VariableError
from agent_orchestrator.tickets.gates.artifacts import ARTIFACT_OF_REQUEST
from agent_orchestrator.tickets.gates.measures import (
    MEASURES,
    REVIEW_DEFAULT_COMPLEXITY_THRESHOLD,
    number_text,
)
from agent_orchestrator.tickets.gates.models import (
    ApprovalCriterion,
    ArtifactCriterion,
    BackTo,
    Gate,
    TasksCriterion,
    ThresholdCriterion,
)
from agent_orchestrator.tickets.variables import parse_template, placeholder_problem


@dataclass(frozen=True)
class PhaseView:
    """What the checks need of a phase: its name, status, tasks (key -> request type and payload)."""

    name: str
    status: str
    tasks: Mapping[str, tuple[str, Mapping[str, Any]]] = field(default_factory=dict)
    expand: str | None = None


class _GateChecker:
    def __init__(
        self, file: str, index: int, phases: Sequence[PhaseView], earlier_keys: Collection[str]
    ) -> None:
        self.file, self.index, self.phases, self.earlier_keys = file, index, phases, earlier_keys
        self.phase = phases[index]
        self.base = f"phases[{index}].gate"

    def fail(self, key: str, reason: str) -> PhaseFileError:
        return PhaseFileError(self.file, f"{self.base}{key}", reason)

    def task(self, key: str, where: str) -> str | None:
        """The request type of a task of this phase (None when the phase expands a plan: any key may
        come); refuses a key the phase does not declare."""
        if self.phase.expand is not None:
            return None
        if key not in self.phase.tasks:
            known = ", ".join(self.phase.tasks) or "none"
            raise self.fail(where, f"unknown task {key!r} (tasks of {self.phase.name}: {known})")
        return self.phase.tasks[key][0]

    def run(self, gate: Gate) -> None:
        if self.phase.status in ("done", "cancelled"):
            raise self.fail("", f"a terminal phase (status {self.phase.status}) has no gate")
        if self.phase.status == "blocked":
            raise self.fail("", "a blocked phase waits for a person, not for a gate")
        approvals = 0
        for j, criterion in enumerate(gate.criteria):
            where = f".criteria[{j}]"
            if isinstance(criterion, TasksCriterion):
                for k, key in enumerate(criterion.tasks):
                    self.task(key, f"{where}.tasks[{k}]")
            elif isinstance(criterion, ArtifactCriterion):
                self.artifact(criterion, where)
            elif isinstance(criterion, ThresholdCriterion):
                self.threshold(criterion, where)
            elif isinstance(criterion, ApprovalCriterion):
                approvals += 1
                if approvals > 1:
                    raise self.fail(where, "a gate asks one approval question")
                self.question(criterion, where)
        if isinstance(gate.on_fail, BackTo):
            self.back_to(gate.on_fail.phase)

    def artifact(self, criterion: ArtifactCriterion, where: str) -> None:
        makers = sorted(rt for rt, kind in ARTIFACT_OF_REQUEST.items() if kind == criterion.artifact)
        if criterion.task is not None:
            request_type = self.task(criterion.task, f"{where}.task")
            produced = ARTIFACT_OF_REQUEST.get(request_type or "")
            if request_type is not None and produced != criterion.artifact:
                raise self.fail(
                    f"{where}.artifact",
                    f"task {criterion.task!r} ({request_type}) produces {produced or 'no artifact'}, "
                    f"not {criterion.artifact} (made by {', '.join(makers)})",
                )
        elif self.phase.expand is None and not any(
            ARTIFACT_OF_REQUEST.get(rt) == criterion.artifact for rt, _ in self.phase.tasks.values()
        ):
            raise self.fail(
                f"{where}.artifact",
                f"no task of {self.phase.name} produces a {criterion.artifact} (made by {', '.join(makers)})",
            )

    def threshold(self, criterion: ThresholdCriterion, where: str) -> None:
        request_type = self.task(criterion.task, f"{where}.task")
        measure = MEASURES.get(criterion.measure)
        if measure is None:
            raise self.fail(
                f"{where}.measure",
                f"unknown measure {criterion.measure!r} (known: {', '.join(sorted(MEASURES))})",
            )
        if request_type is not None and request_type not in measure.request_types:
            reads = " or ".join(sorted(measure.request_types))
            raise self.fail(
                f"{where}.measure",
                f"{measure.name} reads {reads} results; task {criterion.task!r} is {request_type}",
            )
        allowed = " or ".join(c for c in ("min", "max", "equals") if c in measure.comparisons)
        for name, value in criterion.expected.items():
            if name not in measure.comparisons:
                raise self.fail(
                    f"{where}.{name}", f"{measure.name} ({measure.description}) takes {allowed}, not {name}"
                )
            if name != "equals":
                continue
            if measure.value_type == "flag" and not isinstance(value, bool):
                raise self.fail(f"{where}.equals", f"{measure.name} is true or false, not {value!r}")
            if measure.value_type == "number" and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise self.fail(f"{where}.equals", f"{measure.name} is a number, not {value!r}")
            if measure.value_type == "text" and not isinstance(value, str):
                raise self.fail(f"{where}.equals", f"{measure.name} is a text, not {value!r}")
            if measure.choices and value not in measure.choices:
                raise self.fail(
                    f"{where}.equals", f"{measure.name} is one of {', '.join(measure.choices)}, not {value!r}"
                )
        if measure.name == "review.max_complexity" and request_type is not None and criterion.max is not None:
            self.complexity(criterion.task, criterion.max, where)

    def complexity(self, task: str, limit: float, where: str) -> None:
        # The review names only functions above its complexity_threshold: a max below that threshold
        # could never be shown to hold, so the gate could never pass.
        payload = self.phase.tasks[task][1]
        threshold = payload.get("complexity_threshold", REVIEW_DEFAULT_COMPLEXITY_THRESHOLD)
        if isinstance(threshold, int) and not isinstance(threshold, bool) and threshold > limit:
            raise self.fail(
                f"{where}.max",
                f"max {number_text(limit)} is below the complexity_threshold {threshold} of task {task!r}: "
                "the review reports only functions above it, so this could never be shown; "
                f"set the task's complexity_threshold to at most {number_text(limit)}",
            )

    def question(self, criterion: ApprovalCriterion, where: str) -> None:
        try:
            parts = parse_template(criterion.question)
        except VariableError as exc:
            raise self.fail(f"{where}.question", exc.reason) from None
        for part in parts:
            if not isinstance(part, str) and (problem := placeholder_problem(part, self.earlier_keys)):
                raise self.fail(f"{where}.question", problem)

    def back_to(self, target: str) -> None:
        names = [p.name for p in self.phases]
        if target not in names:
            raise self.fail(".on_fail.phase", f"undeclared phase {target!r} (declared: {', '.join(names)})")
        position = names.index(target)
        if position >= self.index:
            which = "this phase" if position == self.index else "a later phase"
            raise self.fail(
                ".on_fail.phase",
                f"{target} is {which}: back_to names an earlier phase (before {self.phase.name} in the "
                "file); use action retry to run this phase's tasks again",
            )
        status = self.phases[position].status
        if status != "open":
            raise self.fail(".on_fail.phase", f"{target} is not a working phase (status {status})")


def check_gate(
    file: str, index: int, gate: Gate, phases: Sequence[PhaseView], earlier_keys: Collection[str]
) -> None:
    """Check the gate of phases[index]; `earlier_keys`: task keys of earlier phases (what an approval
    question's {context.*} may name). PhaseFileError(file, key path, reason) on the first problem."""
    _GateChecker(file, index, phases, earlier_keys).run(gate)
