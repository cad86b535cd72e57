"""Every coordination step is an event: one shape for the run's events and the bus.

The workflow writes `event.run_event_kind` (`coordination_split`, `coordination_join`, ...) with
`event.data()` as a run event, and broadcasts the same data on the bus (an InterAgentEvent with the
ticket as correlation id). The data are bounded: a merged value larger than MAX_VALUE_CHARS of JSON
is left out (its size is given); the full result is what the workflow records under the action's key.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from agent_orchestrator.coordination.merge import MergeResult
from agent_orchestrator.coordination.plan import LoopDecision, SplitRecord
from agent_orchestrator.coordination.primitives import JoinDecision, SyncDecision
from agent_orchestrator.coordination.templating import canonical

MAX_VALUE_CHARS = 2000
Decision = SplitRecord | JoinDecision | SyncDecision | MergeResult | LoopDecision
_KINDS: dict[type, str] = {
    SplitRecord: "split",
    JoinDecision: "join",
    SyncDecision: "sync",
    MergeResult: "merge",
    LoopDecision: "loop",
}


class CoordinationEvent(BaseModel):
    kind: Literal["split", "join", "sync", "merge", "loop"]
    pattern: str
    key: str
    status: str
    detail: dict[str, Any]

    @property
    def run_event_kind(self) -> str:
        return f"coordination_{self.kind}"

    def data(self) -> dict[str, Any]:
        return {"pattern": self.pattern, "key": self.key, "status": self.status, **self.detail}


def _status(decision: Decision) -> str:
    if isinstance(decision, SplitRecord):
        return "split"
    if isinstance(decision, MergeResult):
        return "tie" if decision.tie is not None and not decision.decided else "decided"
    return decision.status


def coordination_event(pattern: str, key: str, decision: Decision) -> CoordinationEvent:
    """The event of one decision (a split made, a join or sync decided, a merge, a loop's round)."""
    detail = decision.model_dump(mode="json")
    detail.pop("status", None)
    if isinstance(decision, MergeResult):
        size = len(canonical(detail["value"]))
        if size > MAX_VALUE_CHARS:
            detail["value"] = None
            detail["value_chars"] = size
        if decision.found_in is not None and len(decision.found_in) > 50:
            detail["found_in"] = None  # one list per item: bounded with the value it describes
    return CoordinationEvent(
        kind=_KINDS[type(decision)], pattern=pattern, key=key, status=_status(decision), detail=detail
    )
