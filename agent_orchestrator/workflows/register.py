"""`register_workflow`: add a LangGraph workflow to the engine's workflow table in one line::

    register_workflow("pr_deployment", build_pr_deployment_graph, PRDeploymentInput)

Its runs start from `MultiAgentState`'s initial values (ids, timestamps, empty collections)
with the validated input on top, unless the workflow gives its own ``to_state``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from agent_orchestrator.runs.workflow_table import (
    GraphBuilder,
    StateFromInput,
    WorkflowSpec,
    WorkflowTable,
    default_workflows,
)
from agent_orchestrator.workflows.state import initial_state


def multi_agent_start(workflow: str) -> StateFromInput:
    def to_state(data: BaseModel, run_id: str) -> dict[str, Any]:
        return initial_state(run_id, workflow, **data.model_dump(mode="json"))

    return to_state


def register_workflow(
    name: str,
    build: GraphBuilder,
    input_model: type[BaseModel],
    *,
    table: WorkflowTable = default_workflows,
    to_state: StateFromInput | None = None,
    **options: Any,
) -> WorkflowSpec:
    return table.register(name, build, input_model, to_state=to_state or multi_agent_start(name), **options)
