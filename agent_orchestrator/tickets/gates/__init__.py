"""Phase gates: what a phase must prove before a ticket leaves it.

A phase file declares a `gate:` per phase (`models.Gate`: criteria of kinds tasks, artifact, threshold
and approval, and `on_fail`); `checks.check_gate` refuses a bad one at load. When a phase visit's tasks
are final, `artifacts_of` says what each produced and `GateStore.record_artifacts` keeps it;
`evaluate` turns the tasks, artifacts and a person's approval into a `GateResult` (kept with
`GateStore.record_result`), and `decide` says what follows: advance, wait for the approval, back to an
earlier phase, retry tasks, or block. Thresholds compare `measures` read from a task's result.
"""

from agent_orchestrator.tickets.gates.artifacts import (
    ARTIFACT_OF_REQUEST,
    MAX_CONTENT_BYTES,
    artifacts_from_tasks,
    artifacts_of,
    bounded_content,
)
from agent_orchestrator.tickets.gates.checks import PhaseView, check_gate
from agent_orchestrator.tickets.gates.evaluate import GateDecision, decide, evaluate, render_question
from agent_orchestrator.tickets.gates.measures import (
    MEASURES,
    Measure,
    MeasureError,
    Measurement,
    get_measure,
    measure,
)
from agent_orchestrator.tickets.gates.models import (
    ARTIFACT_KINDS,
    Approval,
    ApprovalCriterion,
    ArtifactCriterion,
    ArtifactKind,
    BackTo,
    Block,
    Criterion,
    CriterionResult,
    Gate,
    GateArtifact,
    GateResult,
    GateResultRecord,
    GateVerdict,
    OnFail,
    Retry,
    TasksCriterion,
    ThresholdCriterion,
    parse_visit_label,
    visit_label,
)
from agent_orchestrator.tickets.gates.store import GateStore

__all__ = [
    "ARTIFACT_KINDS",
    "ARTIFACT_OF_REQUEST",
    "MAX_CONTENT_BYTES",
    "MEASURES",
    "Approval",
    "ApprovalCriterion",
    "ArtifactCriterion",
    "ArtifactKind",
    "BackTo",
    "Block",
    "Criterion",
    "CriterionResult",
    "Gate",
    "GateArtifact",
    "GateDecision",
    "GateResult",
    "GateResultRecord",
    "GateStore",
    "GateVerdict",
    "Measure",
    "MeasureError",
    "Measurement",
    "OnFail",
    "PhaseView",
    "Retry",
    "TasksCriterion",
    "ThresholdCriterion",
    "artifacts_from_tasks",
    "artifacts_of",
    "bounded_content",
    "check_gate",
    "decide",
    "evaluate",
    "get_measure",
    "measure",
    "parse_visit_label",
    "render_question",
    "visit_label",
]
