"""DECOMPOSE_TASK: a plan of agent requests with dependencies.

Without an LLM the plan comes from the task catalogue. With one, the model proposes the plan and
it is validated against the same catalogue (known capabilities and request types, an acyclic
graph); an answer that fails validation falls back to the rule-based plan, with a note saying why.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from langchain_core.language_models import BaseChatModel

from services.orchestrator_agent.catalogue import (
    Catalogue,
    PlanGraphError,
    UnknownTaskKind,
    check_bindings,
    default_catalogue,
    flatten,
    topological_stages,
)
from services.orchestrator_agent.models import (
    DecomposeResult,
    DecomposeTaskPayload,
    PlanDraft,
    PlanSource,
    PlanStep,
)
from shared.llm import LLMCallError, LLMOutputError, invoke_structured

log = logging.getLogger(__name__)
LLM_TIMEOUT_SECONDS = 90.0

_SYSTEM = (
    "You are the planner of a software-delivery platform. Split the task into steps, each one request "
    "to one agent. Use only these capabilities and request types (capability: request types):\n"
    "{capabilities}\n"
    "Give each step a short snake_case id, a title, its capability and request_type, the ids of the "
    "steps it must wait for in depends_on, the payload fields it needs taken from the task's context, "
    "and in bindings the payload fields that come from an earlier step's result, as "
    '{{"field": "<step id>.<result field>"}} (e.g. {{"head": "implement.branch"}}). No cycles.'
)


def decompose_task(
    payload: DecomposeTaskPayload,
    *,
    chat_model: BaseChatModel | None = None,
    catalogue: Catalogue | None = None,
) -> DecomposeResult:
    catalogue = catalogue or default_catalogue()
    if payload.kind is not None:
        catalogue.kind(payload.kind)  # an unknown kind is the caller's error, LLM or not
    if chat_model is None or not payload.use_llm:
        return rule_plan(payload, catalogue)
    try:
        return _llm_plan(payload, chat_model, catalogue)
    except (LLMCallError, LLMOutputError, PlanGraphError) as exc:
        log.warning("llm plan rejected; using the rule-based plan", extra={"error": str(exc)})
        fallback = rule_plan(payload, catalogue)
        note = f"the model's plan was not usable ({exc}); this is the rule-based plan"
        return fallback.model_copy(update={"notes": [note, *fallback.notes]})


def rule_plan(payload: DecomposeTaskPayload, catalogue: Catalogue) -> DecomposeResult:
    notes: list[str] = []
    kind_name = payload.kind
    if kind_name is None:
        kind_name = catalogue.infer_kind(payload.description)
        notes.append(f"kind {kind_name!r} inferred from the description")
    kind = catalogue.kind(kind_name)
    steps = [
        PlanStep(
            id=sub.id,
            title=sub.title,
            capability=sub.capability,
            request_type=sub.request_type,
            depends_on=list(sub.depends_on),
            payload=_payload(sub.inputs, sub.params, payload),
            bindings=dict(sub.bindings),
        )
        for sub in kind.subtasks
    ]
    missing = sorted({key for sub in kind.subtasks for key in sub.inputs.values()} - set(payload.context))
    if missing:
        notes.append(f"context lacks {', '.join(missing)}: fill those payload fields before dispatching")
    return _ordered(kind_name, "rules", steps, notes)


def _payload(inputs: dict[str, str], params: dict[str, Any], task: DecomposeTaskPayload) -> dict[str, Any]:
    values = {field: task.context[key] for field, key in inputs.items() if key in task.context}
    for key, value in params.items():
        values[key] = value.replace("{description}", task.description) if isinstance(value, str) else value
    return values


def _llm_plan(
    payload: DecomposeTaskPayload, chat_model: BaseChatModel, catalogue: Catalogue
) -> DecomposeResult:
    capabilities = "\n".join(f"- {cap}: {', '.join(types)}" for cap, types in catalogue.capabilities.items())
    task = {"description": payload.description, "kind": payload.kind, "context": payload.context}
    draft = invoke_structured(
        chat_model,
        PlanDraft,
        _SYSTEM.format(capabilities=capabilities),
        json.dumps(task, default=str),
        timeout=LLM_TIMEOUT_SECONDS,
    )
    for step in draft.steps:
        problem = catalogue.request_problem(step.capability, step.request_type)
        if problem:
            raise LLMOutputError(f"step {step.id!r}: {problem}")
    return _ordered(payload.kind, "llm", draft.steps, [])


def _ordered(
    kind: str | None, source: PlanSource, steps: list[PlanStep], notes: list[str]
) -> DecomposeResult:
    stages = topological_stages(steps)
    check_bindings(steps)
    by_id = {s.id: s for s in steps}
    order = flatten(stages)
    return DecomposeResult(
        kind=kind,
        source=source,
        steps=[by_id[i] for i in order],
        order=order,
        stages=stages,
        notes=notes,
    )


__all__ = ["UnknownTaskKind", "decompose_task", "rule_plan"]
