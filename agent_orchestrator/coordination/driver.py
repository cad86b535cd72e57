"""Carrying out a pattern's plan as its tasks finish: the workflow's contract (expand.py) as one pure
function over the task rows, so the ticket workflow only reads rows, applies what it is told and
keeps the `PatternRun` in its checkpointed state.

    run, first = PatternRun.start(plan)          # create first.create, emit first.events
    step = advance(run, rows, now, variables, library=...)
    # create step.create, cancel step.cancel, emit step.events; keep step.run;
    # step.run.finished -> step.run.failures() says whether the pattern succeeded;
    # otherwise wait until a task of the phase becomes final, or until step.wake_at (a sync's deadline).

`advance` loops until nothing more can be decided with what it was given, so one call takes every
decision the rows allow (a join, then the merge that waited for it, then the step rendered from the
merge). It is deterministic for the same rows and `now`; a re-executed workflow node that calls it
again asks to create the same task keys (idempotent) and cancel the same tasks (a no-op the second
time), so a crash between applying and checkpointing loses nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field

from agent_orchestrator.coordination.errors import CoordinationError
from agent_orchestrator.coordination.events import CoordinationEvent, coordination_event
from agent_orchestrator.coordination.expand import render_deferred, render_round
from agent_orchestrator.coordination.merge import merge
from agent_orchestrator.coordination.patterns import Pattern
from agent_orchestrator.coordination.plan import (
    DeferredAction,
    JoinAction,
    LoopAction,
    MergeAction,
    PatternPlan,
    PlanAction,
    SyncAction,
    loop_decision,
)
from agent_orchestrator.coordination.primitives import join, quorum, results_of, sync_point
from agent_orchestrator.tasks import Task, TaskSpec, TaskStatus


class PatternRun(BaseModel):
    """Where a pattern's plan stands: JSON, kept in the workflow's checkpointed state."""

    pattern: str
    result: str | None = Field(None, description="the key whose recorded result is the pattern's result")
    actions: list[PlanAction] = Field(description="every action known so far, in the order rendered")
    decisions: dict[str, Any] = Field(default_factory=dict, description="action key -> its result, as JSON")
    done: list[str] = Field(default_factory=list, description="action keys that are done")
    failed: dict[str, str] = Field(default_factory=dict, description="action key -> why it failed")
    started: dict[str, datetime] = Field(default_factory=dict, description="sync key -> when it started")
    rendered: list[str] = Field(default_factory=list, description="deferred actions rendered")
    rounds: dict[str, int] = Field(default_factory=dict, description="loop key -> the round running")
    tolerated: list[str] = Field(
        default_factory=list,
        description="task keys whose failure does not fail the pattern: a ready quorum or a sync point "
        "gave up on them (and cancelled them)",
    )
    finished: bool = False

    @classmethod
    def start(cls, plan: PatternPlan) -> tuple[PatternRun, Step]:
        """The run of a freshly expanded plan, and its first step: create the plan's tasks."""
        run = cls(pattern=plan.pattern, result=plan.result, actions=list(plan.actions))
        events = [coordination_event(plan.pattern, s.key, s) for s in plan.splits]
        return run, Step(run=run, create=list(plan.tasks), events=events, changed=True)

    def failures(self, tasks: Sequence[Task]) -> list[str]:
        """Why the pattern did not succeed (empty: it did): its failed actions and the tasks that
        ended without success that nothing tolerated."""
        reasons = [f"{key}: {why}" for key, why in self.failed.items()]
        for task in tasks:
            if (
                task.status.final
                and task.status is not TaskStatus.SUCCEEDED
                and task.key not in self.tolerated
            ):
                why = task.error or task.blocked_reason or ""
                reasons.append(f"{task.key} {task.status.value}" + (f": {why[:300]}" if why else ""))
        return reasons

    def reopened(self) -> dict[str, Any]:
        """This run, unfinished and with its failed actions to decide again (a person retried tasks
        of the phase), as JSON for the checkpointed state."""
        return self.model_copy(update={"failed": {}, "finished": False}).model_dump(mode="json")

    def outcome(self) -> dict[str, Any]:
        """The decisions of the pattern's own steps (not of a loop's rounds or a used pattern's), by
        step key: what the ticket's context keeps (a vote's `verdict`, a loop's last implementation)."""
        return {
            a.key: self.decisions[a.key] for a in self.actions if a.key == a.step and a.key in self.decisions
        }


@dataclass
class Step:
    """What one `advance` asks the workflow to do."""

    run: PatternRun
    create: list[TaskSpec] = field(default_factory=list)
    cancel: list[UUID] = field(default_factory=list)
    events: list[CoordinationEvent] = field(default_factory=list)
    changed: bool = False
    wake_at: datetime | None = None


def advance(
    run: PatternRun,
    tasks: Sequence[Task],
    now: datetime,
    variables: Mapping[str, Any],
    *,
    library: Mapping[str, Pattern],
) -> Step:
    """Every decision the task rows allow now (see the module's docstring); `run` is not modified."""
    step = Step(run=run.model_copy(deep=True))
    rows = {t.key: t for t in tasks}
    while _pass(step, rows, now, variables, library):
        step.changed = True
    if step.create or not all(t.status.final for t in tasks):
        return step
    # Every task is final: what is still pending waits for something that will never come.
    while _settle(step, rows):
        step.changed = True
        while _pass(step, rows, now, variables, library):
            pass
        if step.create:
            return step  # a round or a step rendered after all: its tasks come first
    if not step.run.finished:
        step.run.finished = step.changed = True
    return step


def _pass(
    step: Step,
    rows: dict[str, Task],
    now: datetime,
    variables: Mapping[str, Any],
    library: Mapping[str, Pattern],
) -> bool:
    """One sweep over the pending actions; whether anything was decided or rendered."""
    run = step.run
    progressed = False
    for action in list(run.actions):
        if not _open(run, action):
            continue
        if isinstance(action, LoopAction) and action.key in run.rounds:
            progressed |= _end_round(step, action, rows, variables, library)
            continue
        broken = [k for k in action.after if _failed(run, rows, k)]
        if broken:
            _fail(step, action, f"not run: {', '.join(broken)} did not succeed")
            progressed = True
            continue
        if not all(_done(run, rows, k) for k in action.after):
            continue
        progressed |= _carry_out(step, action, rows, now, variables, library)
    return progressed


def _carry_out(
    step: Step,
    action: PlanAction,
    rows: dict[str, Task],
    now: datetime,
    variables: Mapping[str, Any],
    library: Mapping[str, Pattern],
) -> bool:
    run = step.run
    if isinstance(action, DeferredAction):
        try:
            plan = render_deferred(action, variables, _results(run, rows), library=library)
        except CoordinationError as exc:
            _fail(step, action, str(exc))
            return True
        run.rendered.append(action.key)
        _take(step, plan)
        return True
    if isinstance(action, LoopAction):
        return _start_round(step, action, 1, rows, variables, library)
    members = [rows[k] for k in action.of if k in rows]
    if len(members) < len(action.of):
        return False  # not all created yet: rendered by a deferred step still to come
    if isinstance(action, JoinAction):
        mode = quorum(action.quorum) if action.mode == "quorum" and action.quorum else "all"
        joined = join(members, mode, cancel_rest=action.cancel_rest)
        if joined.status == "waiting":
            return False
        _decide(step, action, joined)
        if joined.status == "ready":
            run.done.append(action.key)
            step.cancel.extend(joined.cancel)
            run.tolerated.extend([*joined.unsuccessful, *(joined.unfinished if joined.cancel else [])])
        else:
            _fail(step, action, joined.reason)
        return True
    if isinstance(action, SyncAction):
        fresh = action.key not in run.started  # kept: a re-executed node must not move the deadline
        started = run.started.setdefault(action.key, now)
        deadline = started + timedelta(seconds=action.timeout_seconds)
        synced = sync_point(members, deadline, now, action.on_timeout)
        if synced.status == "waiting":
            step.wake_at = deadline if step.wake_at is None else min(step.wake_at, deadline)
            return fresh
        _decide(step, action, synced)
        step.cancel.extend(synced.cancel)
        run.tolerated.extend(synced.late)
        if synced.proceed:
            run.done.append(action.key)
        else:
            _fail(step, action, synced.reason)
        return True
    assert isinstance(action, MergeAction)
    if not all(m.status.final for m in members):
        return False
    try:
        merged = merge(
            results_of(members, action.of),
            action.strategy,
            field=action.field,
            key=action.identity,
            tie_breaker=action.tie_breaker,
            severity_order=action.severity_order,
        )
    except CoordinationError as exc:
        _fail(step, action, str(exc))
        return True
    _decide(step, action, merged)
    if merged.decided:
        run.done.append(action.key)
    else:
        _fail(step, action, "a tie no tie-breaker decides")
    return True


def _start_round(
    step: Step,
    action: LoopAction,
    number: int,
    rows: dict[str, Task],
    variables: Mapping[str, Any],
    library: Mapping[str, Pattern],
) -> bool:
    try:
        plan = render_round(action, number, variables, _results(step.run, rows), library=library)
    except CoordinationError as exc:
        _fail(step, action, str(exc))
        return True
    step.run.rounds[action.key] = number
    _take(step, plan)
    return True


def _end_round(
    step: Step,
    action: LoopAction,
    rows: dict[str, Task],
    variables: Mapping[str, Any],
    library: Mapping[str, Pattern],
) -> bool:
    """Decide the loop once every task and action of its running round is final."""
    run = step.run
    number = run.rounds[action.key]
    prefix = action.round_prefix(number)
    if any(s.key.startswith(prefix) for s in step.create):
        return False
    if any(k.startswith(prefix) and not t.status.final for k, t in rows.items()):
        return False
    inner = [a for a in run.actions if a.key.startswith(prefix)]
    if any(_open(run, a) for a in inner):
        return False
    broken = [a.key for a in inner if a.key in run.failed] + [
        k
        for k, t in rows.items()
        if k.startswith(prefix) and t.status is not TaskStatus.SUCCEEDED and k not in run.tolerated
    ]
    if broken:
        _fail(step, action, f"round {number}: {', '.join(broken)} did not succeed")
        return True
    results = _results(run, rows)
    decided = loop_decision(action, number, results)
    _decide(step, action, decided)
    if decided.status == "continue" and decided.next_round is not None:
        return _start_round(step, action, decided.next_round, rows, variables, library)
    if decided.status == "done":
        run.done.append(action.key)
        run.decisions[action.key] = results.get(decided.result_key) if decided.result_key else None
        # The rounds before the approved one are history, not failures of the pattern.
        run.tolerated.extend(
            k for k, t in rows.items() if k.startswith(f"{action.key}-r") and not k.startswith(prefix)
        )
    else:
        _fail(step, action, decided.reason)
    return True


def _settle(step: Step, rows: dict[str, Task]) -> bool:
    """Fail the innermost pending actions (a loop whose round holds a pending action waits for that
    one first), naming what they waited for; whether any was failed."""
    run = step.run
    pending = [a for a in run.actions if _open(run, a)]
    settled = False
    for action in pending:
        if isinstance(action, LoopAction) and action.key in run.rounds:
            prefix = action.round_prefix(run.rounds[action.key])
            if any(a.key.startswith(prefix) for a in pending):
                continue
        waiting = [k for k in action.after if not _done(run, rows, k)] or [*getattr(action, "of", [])]
        _fail(step, action, f"never decided: waited for {', '.join(waiting) or 'nothing it could see'}")
        settled = True
    return settled


def _take(step: Step, plan: PatternPlan) -> None:
    step.create.extend(plan.tasks)
    step.run.actions.extend(plan.actions)
    step.events.extend(coordination_event(plan.pattern, s.key, s) for s in plan.splits)


def _decide(step: Step, action: PlanAction, decision: Any) -> None:
    step.run.decisions[action.key] = decision.model_dump(mode="json")
    step.events.append(coordination_event(action.pattern, action.key, decision))


def _fail(step: Step, action: PlanAction, reason: str) -> None:
    step.run.failed[action.key] = reason


def _open(run: PatternRun, action: PlanAction) -> bool:
    """Not decided yet (a deferred step is decided once rendered: its tasks and actions take over)."""
    return action.key not in run.done and action.key not in run.failed and action.key not in run.rendered


def _done(run: PatternRun, rows: dict[str, Task], key: str) -> bool:
    task = rows.get(key)
    return key in run.done or (task is not None and task.status is TaskStatus.SUCCEEDED)


def _failed(run: PatternRun, rows: dict[str, Task], key: str) -> bool:
    task = rows.get(key)
    return key in run.failed or (
        task is not None and task.status.final and task.status is not TaskStatus.SUCCEEDED
    )


def _results(run: PatternRun, rows: dict[str, Task]) -> dict[str, Any]:
    """Concrete key -> recorded result: the succeeded tasks' results and the decided actions'."""
    results = {k: t.result for k, t in rows.items() if t.status is TaskStatus.SUCCEEDED}
    results.update(run.decisions)
    return results
