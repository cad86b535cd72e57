"""The orchestrator agent's DECOMPOSE_TASK plans as tasks.

A plan (the agent's `DecomposeResult`: steps with id, title, capability, request type, payload,
`depends_on` and `bindings`) becomes one task per step, keyed by the step's id, with the same DAG.
A binding — payload field <- "<step>.<result field>" of an earlier step — is filled in by the
dispatcher when it sends the task, from the recorded result of that step (`resolve_bindings`).
A phase file runs a plan with `expand: <task key>`: the phase's tasks are the steps of the plan that
task (a DECOMPOSE_TASK of an earlier phase) returned.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from agent_orchestrator.tasks.errors import TaskArgumentError
from agent_orchestrator.tasks.models import TaskSpec

_MISSING = object()


def specs_from_plan(plan: Any, *, where: str = "plan") -> list[TaskSpec]:
    """One task spec per plan step; TaskArgumentError naming the step and field when it does not fit."""
    steps = plan.get("steps") if isinstance(plan, Mapping) else None
    if not isinstance(steps, list) or not steps:
        raise TaskArgumentError("plan", f"{where}: not a DECOMPOSE_TASK result (no steps)")
    specs = []
    for index, step in enumerate(steps):
        if not isinstance(step, Mapping):
            raise TaskArgumentError("plan", f"{where}: steps[{index}] is not an object")
        try:
            specs.append(
                TaskSpec(
                    key=step.get("id"),
                    title=str(step.get("title") or "")[:300],
                    capability=step.get("capability"),
                    request_type=step.get("request_type"),
                    payload=step.get("payload") or {},
                    depends_on=list(step.get("depends_on") or []),
                    bindings=dict(step.get("bindings") or {}),
                )
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise TaskArgumentError("plan", f"{where}: steps[{index}].{field}: {first['msg']}") from None
    return specs


def resolve_bindings(
    payload: Mapping[str, Any], bindings: Mapping[str, str], results: Mapping[str, Any]
) -> dict[str, Any]:
    """The payload with every bound field set from `results` (task key -> its recorded result).
    TaskArgumentError naming the binding when its task has no result or the result lacks the field."""
    filled = dict(payload)
    for field, source in bindings.items():
        key, _, path = source.partition(".")
        value: Any = results.get(key, _MISSING)
        if value is _MISSING or value is None:
            raise TaskArgumentError("bindings", f"binding {field} <- {source}: task {key!r} has no result")
        for part in path.split("."):
            value = value.get(part, _MISSING) if isinstance(value, Mapping) else _MISSING
            if value is _MISSING:
                raise TaskArgumentError(
                    "bindings", f"binding {field} <- {source}: the result of {key!r} has no {path!r}"
                )
        filled[field] = value
    return filled
