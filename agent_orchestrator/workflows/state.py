"""`MultiAgentState`: the typed state every workflow graph carries.

Each list or dict field has a reducer, so parallel branches (``Send`` fan-outs, nodes
of one superstep) merge their updates instead of one overwriting the other:
lists are appended, dicts are merged key by key (later writer wins per key).
Scalar fields keep LangGraph's default "last value" semantics; two branches must
not write the same scalar in one step (LangGraph raises ``InvalidUpdateError``).

Workflows extend the state with their own fields::

    class DeployState(MultiAgentState, total=False):
        repo: str
        environment: str
"""

from __future__ import annotations

import operator
from datetime import UTC, datetime
from typing import Annotated, Any, TypedDict


def merge_dicts(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    """Reducer: a new dict with the keys of both; on a shared key the update (right) wins."""
    merged = dict(left or {})
    merged.update(right or {})
    return merged


def append_list(left: list[Any] | None, right: list[Any] | Any | None) -> list[Any]:
    """Reducer: the update's items appended (a bare item is appended as one)."""
    if right is None:
        return list(left or [])
    items = right if isinstance(right, list) else [right]
    return operator.add(list(left or []), items)


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat()


class MultiAgentState(TypedDict, total=False):
    task_id: str
    workflow_type: str
    # Appended: each branch adds its own entries.
    subtasks: Annotated[list[dict[str, Any]], append_list]
    checkpoints: Annotated[list[dict[str, Any]], append_list]
    error_log: Annotated[list[dict[str, Any]], append_list]
    # Merged key by key: branches report on different keys (subtask ids, agent ids, lock names).
    subtask_status: Annotated[dict[str, str], merge_dicts]
    agent_assignments: Annotated[dict[str, str], merge_dicts]
    agent_status: Annotated[dict[str, str], merge_dicts]
    locks: Annotated[dict[str, Any], merge_dicts]
    partial_results: Annotated[dict[str, Any], merge_dicts]
    final_result: Any
    started_at: str
    updated_at: str


def initial_state(task_id: str, workflow_type: str, **fields: Any) -> dict[str, Any]:
    """The starting values of a run's state: identifiers, timestamps, empty collections."""
    now = utc_now_iso()
    state: dict[str, Any] = {
        "task_id": task_id,
        "workflow_type": workflow_type,
        "subtasks": [],
        "checkpoints": [],
        "error_log": [],
        "subtask_status": {},
        "agent_assignments": {},
        "agent_status": {},
        "locks": {},
        "partial_results": {},
        "final_result": None,
        "started_at": now,
        "updated_at": now,
    }
    state.update(fields)
    return state
