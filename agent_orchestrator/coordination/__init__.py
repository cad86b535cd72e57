"""Coordination: primitives over tasks (split, join, sync point), merges of their results (combine,
union, intersection, majority) and the YAML patterns built from them (config/patterns/*.pattern.yaml).

Pure decisions and rendering: nothing here touches the database or the bus. The ticket workflow
expands a pattern into a `PatternPlan`, creates its tasks, and carries out its actions with these
functions, emitting a `CoordinationEvent` per decision (docs/COORDINATION_PATTERNS.md).
"""

from agent_orchestrator.coordination.driver import PatternRun, Step, advance
from agent_orchestrator.coordination.errors import (
    CoordinationArgumentError,
    CoordinationError,
    MergeError,
    PatternError,
    TemplateError,
    TieError,
)
from agent_orchestrator.coordination.events import CoordinationEvent, coordination_event
from agent_orchestrator.coordination.expand import expand, render_deferred, render_round
from agent_orchestrator.coordination.merge import MergeResult, MergeStrategy, Tie, TieBreaker, Vote, merge
from agent_orchestrator.coordination.patterns import (
    PATTERNS_DIR,
    Pattern,
    bind_params,
    check_library,
    load_pattern_file,
    load_patterns,
)
from agent_orchestrator.coordination.plan import (
    DeferredAction,
    JoinAction,
    LoopAction,
    LoopDecision,
    MergeAction,
    PatternPlan,
    PlanAction,
    ScopeEntry,
    SplitRecord,
    SyncAction,
    loop_decision,
)
from agent_orchestrator.coordination.primitives import (
    JoinDecision,
    Quorum,
    SyncDecision,
    join,
    partition,
    quorum,
    results_of,
    split,
    sync_point,
)
from agent_orchestrator.coordination.schema import PatternFile

__all__ = [
    "PATTERNS_DIR",
    "CoordinationArgumentError",
    "CoordinationError",
    "CoordinationEvent",
    "DeferredAction",
    "JoinAction",
    "JoinDecision",
    "LoopAction",
    "LoopDecision",
    "MergeAction",
    "MergeError",
    "MergeResult",
    "MergeStrategy",
    "Pattern",
    "PatternError",
    "PatternFile",
    "PatternPlan",
    "PatternRun",
    "PlanAction",
    "Quorum",
    "ScopeEntry",
    "SplitRecord",
    "Step",
    "SyncAction",
    "SyncDecision",
    "TemplateError",
    "Tie",
    "TieBreaker",
    "TieError",
    "Vote",
    "advance",
    "bind_params",
    "check_library",
    "coordination_event",
    "expand",
    "join",
    "load_pattern_file",
    "load_patterns",
    "loop_decision",
    "merge",
    "partition",
    "quorum",
    "render_deferred",
    "render_round",
    "results_of",
    "split",
    "sync_point",
]
