"""What the flagship workflows share about outcomes: the failure that ends a run with its
reason, and the per-step bookkeeping every node adds to `MultiAgentState`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from agent_orchestrator.runs.errors import RunFailed
from agent_orchestrator.workflows.state import utc_now_iso


class WorkflowFailed(RunFailed):
    """The workflow finished without doing its job (changes requested, tests failed, rejected...).

    Raised by the last node, after the report is in the state: the run is `failed` with this
    reason, and its latest checkpoint still holds the Markdown report.
    """


def step_record(agent: str, step: str, status: str, detail: str | None = None) -> dict[str, Any]:
    """State updates that say which agent did a step and how it went (merged by the reducers).

    Only reducer fields: parallel branches may return it in one superstep."""
    update: dict[str, Any] = {
        "agent_assignments": {step: agent},
        "agent_status": {agent: status},
        "subtask_status": {step: status},
        "checkpoints": [{"step": step, "agent": agent, "status": status, "at": utc_now_iso()}],
    }
    if status in ("error", "failed", "unhealthy") and detail:
        update["error_log"] = [{"step": step, "agent": agent, "error": detail, "at": utc_now_iso()}]
    return update


def concluder(default_reason: str) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """The last node of a flagship workflow: fail the run with the report's reason unless it went well."""

    def conclude(state: Mapping[str, Any]) -> dict[str, Any]:
        final = state.get("final_result") or {}
        if not final.get("ok"):
            raise WorkflowFailed(final.get("reason", default_reason))
        return {}

    return conclude
