"""A phase that applies a coordination pattern (`config/patterns/*.pattern.yaml`) by name:

    - name: REVIEW
      pattern: {name: majority_vote, with: {head: "{context.change.head_commit}", reviewers: 3}}

Its tasks are the pattern's tasks for the ticket (`agent_orchestrator.coordination.expand`); when they
are all final the ticket workflow carries out the pattern's joins and merges in order
(`coordinate`) and keeps each decision in the ticket's context under the step's key (a majority
vote's verdict under `verdict`). Phases run patterns made of tasks (split included), joins and
merges; a pattern with a loop, a sync point, a step made from an earlier result or another pattern
is refused at load until the workflow runs those (docs/COORDINATION_PATTERNS.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agent_orchestrator.coordination import (
    PATTERNS_DIR,
    CoordinationError,
    JoinAction,
    MergeAction,
    Pattern,
    PatternPlan,
    expand,
    join,
    load_patterns,
    merge,
    quorum,
    results_of,
)
from agent_orchestrator.coordination.schema import JoinStep, MergeStep, TaskStep
from agent_orchestrator.tasks import Task

SUPPORTED_STEPS = (TaskStep, JoinStep, MergeStep)


class PhasePattern(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    with_: dict[str, Any] = Field(default_factory=dict, alias="with", max_length=50)


@lru_cache(maxsize=4)
def _library(directory: Path) -> dict[str, Pattern]:
    return load_patterns(directory)


def library(directory: Path = PATTERNS_DIR) -> dict[str, Pattern]:
    """The pattern files, loaded (and checked) once per process."""
    return _library(directory)


def pattern_problem(ref: PhasePattern, directory: Path = PATTERNS_DIR) -> tuple[str, str] | None:
    """(key, reason) when a phase cannot apply this pattern, None when it can."""
    known = library(directory)
    pattern = known.get(ref.name)
    if pattern is None:
        return "pattern.name", f"no pattern {ref.name!r} (known: {', '.join(sorted(known)) or 'none'})"
    for index, step in enumerate(pattern.spec.steps):
        if not isinstance(step, SUPPORTED_STEPS):
            return (
                "pattern.name",
                f"pattern {ref.name!r} step {index} ({type(step).__name__}) is not run by phases yet: "
                "phases run patterns of tasks, joins and merges",
            )
    unknown = sorted(set(ref.with_) - set(pattern.spec.parameters))
    if unknown:
        return (
            "pattern.with",
            f"unknown parameters {unknown} of {ref.name!r} (known: {sorted(pattern.spec.parameters)})",
        )
    return None


def pattern_plan(
    ref: PhasePattern, variables: Mapping[str, Any], directory: Path = PATTERNS_DIR
) -> PatternPlan:
    """The pattern's plan for a ticket (its variables); deterministic, so the workflow renders it again
    when the phase's tasks are done to carry out its joins and merges."""
    known = library(directory)
    return expand(known[ref.name], ref.with_, variables, library=known)


def coordinate(plan: PatternPlan, tasks: Sequence[Task]) -> tuple[dict[str, Any], list[str]]:
    """Carry out the plan's joins and merges, in order, over the phase's final tasks: (decision by step
    key, as JSON; the reasons of the ones that failed)."""
    decisions: dict[str, Any] = {}
    failures: list[str] = []
    for action in plan.actions:
        if isinstance(action, JoinAction):
            rows = [t for t in tasks if t.key in action.of]
            mode = quorum(action.quorum) if action.mode == "quorum" and action.quorum else "all"
            decided = join(rows, mode)
            decisions[action.key] = decided.model_dump(mode="json")
            if decided.status != "ready":
                failures.append(f"{action.key}: {decided.reason}")
        elif isinstance(action, MergeAction):
            if any(f.startswith(f"{key}:") for key in action.after for f in failures):
                failures.append(f"{action.key}: not merged, {', '.join(action.after)} failed")
                continue
            try:
                result = merge(
                    results_of(list(tasks), action.of),
                    action.strategy,
                    field=action.field,
                    key=action.identity,
                    tie_breaker=action.tie_breaker,
                    severity_order=action.severity_order,
                )
            except CoordinationError as exc:
                failures.append(f"{action.key}: {exc}")
                continue
            decisions[action.key] = result.model_dump(mode="json")
            if not result.decided:
                failures.append(f"{action.key}: a tie no tie-breaker decides")
        else:  # refused at load (pattern_problem); a newer pattern file must not pass silently
            failures.append(f"{action.key}: {action.kind} steps are not run by phases yet")
    return decisions, failures
