"""Evaluating a gate (pure: the tasks, artifacts and approval in, a GateResult out) and deciding what a
failed gate does (its phase's `on_fail`, bounded by rounds).

Every criterion says in words what it found, so a failed gate names its reasons
("tests: 2 failed (status failed)", "coverage of changed lines 61.5% < 80%"); the verdict is failed
when any criterion failed, waiting when none failed and the approval is undecided, else passed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel

from agent_orchestrator.tasks import Task, TaskStatus
from agent_orchestrator.tickets.errors import VariableError
from agent_orchestrator.tickets.gates.artifacts import ARTIFACT_OF_REQUEST
from agent_orchestrator.tickets.gates.measures import (
    MEASURES,
    Measure,
    MeasureError,
    Measurement,
    number_text,
)
from agent_orchestrator.tickets.gates.models import (
    Approval,
    ApprovalCriterion,
    ArtifactCriterion,
    BackTo,
    Criterion,
    CriterionResult,
    Gate,
    GateArtifact,
    GateResult,
    Retry,
    TasksCriterion,
    ThresholdCriterion,
)
from agent_orchestrator.tickets.variables import resolve

ERROR_CHARS = 300  # of a task's error in a reason: enough to recognise it, short enough to read


def _status_text(task: Task) -> str:
    why = task.error or task.blocked_reason or ""
    return f"{task.key} {task.status.value}" + (f": {why[:ERROR_CHARS]}" if why else "")


def _tasks(criterion: TasksCriterion, by_key: Mapping[str, Task]) -> CriterionResult:
    measured = {key: (by_key[key].status.value if key in by_key else None) for key in criterion.tasks}
    problems = [
        _status_text(by_key[key]) if key in by_key else f"no task {key}"
        for key in criterion.tasks
        if measured[key] != "succeeded"
    ]
    detail = (
        f"tasks not succeeded: {'; '.join(problems)}"
        if problems
        else f"tasks succeeded: {', '.join(criterion.tasks)}"
    )
    return CriterionResult(
        kind="tasks",
        name=criterion.name,
        passed=not problems,
        measured=measured,
        expected="succeeded",
        detail=detail,
    )


def _artifact(
    criterion: ArtifactCriterion, by_key: Mapping[str, Task], artifacts: Sequence[GateArtifact]
) -> CriterionResult:
    found = [
        a
        for a in artifacts
        if a.kind == criterion.artifact and (criterion.task is None or a.task_key == criterion.task)
    ]
    expected = {"artifact": criterion.artifact, "task": criterion.task}
    if found:
        references = [a.reference or a.task_key or "?" for a in found]
        detail = f"{criterion.artifact} recorded ({', '.join(references[:5])})"
        return CriterionResult(
            kind="artifact",
            name=criterion.name,
            passed=True,
            measured=references,
            expected=expected,
            detail=detail,
        )
    detail = f"no {criterion.artifact} artifact" + (f" from task {criterion.task}" if criterion.task else "")
    task = by_key.get(criterion.task) if criterion.task else None
    if task is not None and task.status is not TaskStatus.SUCCEEDED:
        detail += f" ({_status_text(task)})"
    elif task is not None and isinstance(task.result, Mapping) and isinstance(task.result.get("status"), str):
        detail += f" (its result's status is {task.result['status']})"  # a rolled-back deploy, a failed build
    return CriterionResult(
        kind="artifact", name=criterion.name, passed=False, measured=[], expected=expected, detail=detail
    )


def _compare(criterion: ThresholdCriterion, measure: Measure, found: Measurement) -> tuple[bool, str]:
    unit = measure.unit
    value, text = found.value, found.text
    if value is None:
        only_max = criterion.max is not None and criterion.min is None and criterion.equals is None
        if found.at_most is not None and only_max:
            limit = number_text(criterion.max, unit)  # type: ignore[arg-type]  # only_max: max is set
            if found.at_most <= criterion.max:  # type: ignore[operator]
                return True, f"{text} (≤ {limit})"
            return False, f"{text}: not shown to be at most {limit}"
        return False, text if "not measured" in text else f"{text}: not measured"
    if criterion.equals is not None:
        # True == 1 in Python; a flag equals only a flag.
        same = isinstance(value, bool) == isinstance(criterion.equals, bool) and value == criterion.equals
        if same:
            return True, text
        if measure.value_type == "flag" and criterion.equals is True:
            return False, text  # the text of a failed flag says what failed
        shown = (
            number_text(criterion.equals, unit)
            if isinstance(criterion.equals, int | float)
            else criterion.equals
        )
        return False, f"{text}, expected {shown}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False, f"{text}: not a number to compare"
    if criterion.min is not None and value < criterion.min:
        return False, f"{text} < {number_text(criterion.min, unit)}"
    if criterion.max is not None and value > criterion.max:
        return False, f"{text} > {number_text(criterion.max, unit)}"
    bounds = [f"≥ {number_text(criterion.min, unit)}"] if criterion.min is not None else []
    bounds += [f"≤ {number_text(criterion.max, unit)}"] if criterion.max is not None else []
    return True, f"{text} ({', '.join(bounds)})"


def _threshold(criterion: ThresholdCriterion, by_key: Mapping[str, Task]) -> CriterionResult:
    def result(passed: bool, detail: str, measured: Any = None) -> CriterionResult:
        return CriterionResult(
            kind="threshold",
            name=criterion.name,
            passed=passed,
            measured=measured,
            expected=criterion.expected,
            detail=detail,
        )

    task = by_key.get(criterion.task)
    measure = MEASURES.get(criterion.measure)
    if measure is None:
        return result(False, f"unknown measure {criterion.measure!r}")
    if task is None:
        return result(False, f"{criterion.measure}: no task {criterion.task} to measure")
    if task.status is not TaskStatus.SUCCEEDED:
        return result(False, f"{criterion.measure}: nothing to measure, {_status_text(task)}")
    if task.request_type not in measure.request_types:
        reads = " or ".join(sorted(measure.request_types))
        return result(
            False, f"{criterion.measure} reads {reads} results; task {task.key} is {task.request_type}"
        )
    if not isinstance(task.result, Mapping):
        return result(False, f"{criterion.measure}: task {task.key} returned no result object")
    try:
        found = measure.read(task.result, task.payload)
    except MeasureError as exc:
        return result(False, f"{criterion.measure}: cannot measure task {task.key}: {exc}")
    passed, detail = _compare(criterion, measure, found)
    return result(passed, detail, found.shown)


def _approval(criterion: ApprovalCriterion, approval: Approval | None, question: str) -> CriterionResult:
    if approval is None:
        passed, detail, measured = None, f"waiting for approval: {question}", None
    else:
        verb = "approved" if approval.approved else "rejected"
        passed = approval.approved
        detail = f"{verb} by {approval.by}" + (f": {approval.comment}" if approval.comment else "")
        measured = approval.model_dump()
    return CriterionResult(
        kind="approval", name="approval", passed=passed, measured=measured, expected="approved", detail=detail
    )


def render_question(criterion: ApprovalCriterion, variables: Mapping[str, Any] | None) -> str:
    """The approval question with its placeholders resolved (as written when they cannot be)."""
    if variables is None:
        return criterion.question
    try:
        rendered = resolve(criterion.question, variables, where="gate approval", key="question")
    except VariableError:
        return criterion.question
    return rendered if isinstance(rendered, str) else str(rendered)


def evaluate(
    gate: Gate,
    tasks: Iterable[Task],
    artifacts: Sequence[GateArtifact],
    approval: Approval | None = None,
    *,
    variables: Mapping[str, Any] | None = None,
) -> GateResult:
    """Evaluate the gate over one phase visit: its tasks, the artifacts they produced, and a person's
    answer to the approval question (None: not answered yet). `variables` (template_variables of the
    ticket) render the approval question in the result."""
    by_key = {task.key: task for task in tasks}
    results: list[CriterionResult] = []
    for criterion in gate.criteria:
        if isinstance(criterion, TasksCriterion):
            results.append(_tasks(criterion, by_key))
        elif isinstance(criterion, ArtifactCriterion):
            results.append(_artifact(criterion, by_key, artifacts))
        elif isinstance(criterion, ThresholdCriterion):
            results.append(_threshold(criterion, by_key))
        else:
            results.append(_approval(criterion, approval, render_question(criterion, variables)))
    if any(r.passed is False for r in results):
        verdict: Literal["passed", "failed", "waiting"] = "failed"
    elif any(r.passed is None for r in results):
        verdict = "waiting"
    else:
        verdict = "passed"
    return GateResult(verdict=verdict, criteria=results)


# -- what a failed gate does -----------------------------------------------------------------------


class GateDecision(BaseModel):
    """advance (passed), wait (for the approval), back_to `phase`, retry the tasks `retry`, or block."""

    action: Literal["advance", "wait", "back_to", "retry", "block"]
    phase: str | None = None
    retry: list[str] = []  # task keys
    reason: str


def _retry_keys(criterion: Criterion, by_key: Mapping[str, Task]) -> list[str]:
    if isinstance(criterion, TasksCriterion):
        return [k for k in criterion.tasks if k in by_key and by_key[k].status is not TaskStatus.SUCCEEDED]
    if isinstance(criterion, ThresholdCriterion):
        return [criterion.task] if criterion.task in by_key else []
    if isinstance(criterion, ArtifactCriterion):
        if criterion.task is not None:
            return [criterion.task] if criterion.task in by_key else []
        return [k for k, t in by_key.items() if ARTIFACT_OF_REQUEST.get(t.request_type) == criterion.artifact]
    return []  # a person's rejection is not undone by running tasks again


def decide(gate: Gate, result: GateResult, tasks: Iterable[Task], *, failed_rounds: int = 0) -> GateDecision:
    """What the ticket does after `result`. `failed_rounds`: how many earlier evaluations of this gate
    failed for this ticket (GateStore.failed_rounds); once they reach on_fail's max_rounds, a failure
    blocks instead of looping again."""
    if result.verdict == "passed":
        return GateDecision(action="advance", reason=result.summary)
    if result.verdict == "waiting":
        return GateDecision(action="wait", reason=result.summary)
    on_fail = gate.on_fail
    if isinstance(on_fail, BackTo | Retry):
        round_no = failed_rounds + 1
        if round_no > on_fail.max_rounds:
            reason = (
                f"{result.summary} (failed {round_no} times, {on_fail.action} allows {on_fail.max_rounds})"
            )
            return GateDecision(action="block", reason=reason)
        if isinstance(on_fail, BackTo):
            reason = f"{result.summary}; back to {on_fail.phase} (round {round_no} of {on_fail.max_rounds})"
            return GateDecision(action="back_to", phase=on_fail.phase, reason=reason)
        by_key = {task.key: task for task in tasks}
        keys: list[str] = []
        for criterion, outcome in zip(gate.criteria, result.criteria, strict=True):
            if outcome.passed is False:
                keys += [k for k in _retry_keys(criterion, by_key) if k not in keys]
        if keys and not any(
            isinstance(c, ApprovalCriterion) and o.passed is False
            for c, o in zip(gate.criteria, result.criteria, strict=True)
        ):
            reason = (
                f"{result.summary}; retrying {', '.join(keys)} (round {round_no} of {on_fail.max_rounds})"
            )
            return GateDecision(action="retry", retry=keys, reason=reason)
    return GateDecision(action="block", reason=result.summary)
