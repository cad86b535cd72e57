"""What expanding a pattern gives the workflow: a `PatternPlan` of task specs to create now and
actions to carry out as their inputs finish. All of it is JSON-serialisable (the workflow keeps it in
its checkpointed state). The contract is in docs/COORDINATION_PATTERNS.md and expand.py.

Keys: a step's tasks and actions are keyed by the plan's `prefix` + the step's key; a split's parts
add `.1` .. `.N`; a `use` step's pattern is keyed under `<prefix><use key>-`; a loop's round r under
`<loop key>-r<r>-`. A step is **done** (what `after` waits for) when its task succeeded, its join or
sync decided to go on, its merge decided, or its loop ended with its condition met.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from agent_orchestrator.coordination.schema import BodyStep, LoopStep
from agent_orchestrator.coordination.templating import MISSING, canonical, get_path
from agent_orchestrator.tasks import TaskSpec


class ScopeEntry(BaseModel):
    """A step of a scope as its concrete keys: what `{steps.<key>...}`, `of` and `after` turn into."""

    kind: Literal["task", "split", "join", "sync", "merge", "use", "loop"]
    key: str | None = Field(description="where its result is recorded (None for a split: read it by merge)")
    tasks: list[str] = Field(default_factory=list, description="the task keys it stands for (task, split)")
    done: list[str] = Field(description="what must be done before a step waiting for this one starts")


class _Action(BaseModel):
    key: str = Field(description="the action's concrete key: its decision is recorded under it")
    step: str = Field(description="the step's key in its pattern")
    pattern: str
    after: list[str] = Field(default_factory=list, description="concrete keys that must be done first")


class JoinAction(_Action):
    """Decide with primitives.join over the `of` tasks; ready is done, failed fails the step."""

    kind: Literal["join"] = "join"
    of: list[str]
    mode: Literal["all", "quorum"]
    quorum: int | None = None
    cancel_rest: bool = False


class SyncAction(_Action):
    """Decide with primitives.sync_point; the deadline is when the action started + timeout_seconds."""

    kind: Literal["sync"] = "sync"
    of: list[str]
    timeout_seconds: float
    on_timeout: Literal["fail", "proceed"]


class MergeAction(_Action):
    """Merge the results of the `of` tasks (merge.merge) once they are final and `after` is done."""

    kind: Literal["merge"] = "merge"
    of: list[str]
    strategy: Literal["combine", "union", "intersection", "majority"]
    field: str | None = None
    identity: list[str] | None = None
    tie_breaker: Literal["first", "most_severe", "fail"] | None = None
    severity_order: list[Any] | None = None


class _Renderable(_Action):
    prefix: str
    params: dict[str, Any]
    scope: dict[str, ScopeEntry] = Field(description="the steps its template may refer to")
    loop: dict[str, Any] | None = Field(None, description="`{loop.*}` of the round it belongs to")


class DeferredAction(_Renderable):
    """A task or use step rendered later: expand.render_deferred once `after` is done."""

    kind: Literal["deferred"] = "deferred"
    template: BodyStep


class LoopAction(_Renderable):
    """Rounds of the body: expand.render_round(r), then expand.loop_decision(r) once the round is over."""

    kind: Literal["loop"] = "loop"
    template: LoopStep
    max_rounds: int
    until_key: str = Field(description="the until step's key within a round (after `<key>-r<r>-`)")
    until_equals: Any = Field(description="the value that ends the loop, its placeholders resolved")
    result_key: str | None = Field(None, description="the result step's key within a round")
    carry_from: dict[str, tuple[str, str]] = Field(
        default_factory=dict, description="carry name -> (key within the round before, field path)"
    )

    def round_prefix(self, round_number: int) -> str:
        return f"{self.key}-r{round_number}-"


PlanAction = Annotated[
    JoinAction | SyncAction | MergeAction | DeferredAction | LoopAction, Field(discriminator="kind")
]


class SplitRecord(BaseModel):
    """A split that was rendered: for its coordination event."""

    key: str
    parts: list[str]
    source: Literal["count", "files", "parts"]
    by: Literal["file", "module"] | None = None


class PatternPlan(BaseModel):
    pattern: str
    prefix: str
    params: dict[str, Any]
    tasks: list[TaskSpec] = Field(description="create these now, as one batch (their DAG is complete)")
    actions: list[PlanAction] = Field(description="carry these out as their inputs finish, in any order")
    splits: list[SplitRecord] = Field(default_factory=list)
    result: str | None = Field(None, description="the key whose recorded result is the pattern's result")

    def extend(self, other: PatternPlan) -> None:
        """Take in a plan rendered inside this one (an inlined `use`)."""
        self.tasks.extend(other.tasks)
        self.actions.extend(other.actions)
        self.splits.extend(other.splits)


class LoopDecision(BaseModel):
    status: Literal["continue", "done", "exhausted", "failed"]
    round: int
    next_round: int | None = None
    reason: str
    value: Any = Field(None, description="what the until field held in this round")
    result_key: str | None = Field(None, description="done: the key whose result is the loop's result")


def loop_decision(action: LoopAction, round_number: int, results: Mapping[str, Any]) -> LoopDecision:
    """After round `round_number` is over: done (the until condition holds), continue, exhausted
    (max_rounds reached without it) or failed (the until step recorded no result)."""
    until = action.template.loop.until
    prefix = action.round_prefix(round_number)
    key = prefix + action.until_key
    if results.get(key) is None:
        return LoopDecision(
            status="failed", round=round_number, reason=f"round {round_number}: {key} recorded no result"
        )
    value = get_path(results[key], until.field)
    value = None if value is MISSING else value
    what = f"{until.step}.{until.field} is {canonical(value)}"
    if canonical(value) == canonical(action.until_equals):
        result_key = prefix + action.result_key if action.result_key else None
        reason = f"round {round_number}: {what}"
        return LoopDecision(
            status="done", round=round_number, reason=reason, value=value, result_key=result_key
        )
    if round_number >= action.max_rounds:
        reason = f"{action.max_rounds} rounds and {what}, not {canonical(action.until_equals)}"
        return LoopDecision(status="exhausted", round=round_number, reason=reason, value=value)
    return LoopDecision(
        status="continue",
        round=round_number,
        next_round=round_number + 1,
        reason=f"round {round_number}: {what}, not {canonical(action.until_equals)}",
        value=value,
    )
