"""DECOMPOSE_TASK plans as tasks: the orchestrator agent's real plan becomes task specs with the same
DAG and bindings; bindings are checked against the DAG and filled in from recorded results."""

from __future__ import annotations

import pytest

from agent_orchestrator.tasks import (
    TaskArgumentError,
    TaskSpec,
    resolve_bindings,
    specs_from_plan,
    validate_batch,
)
from services.orchestrator_agent.decompose import decompose_task
from services.orchestrator_agent.models import DecomposeTaskPayload

pytestmark = pytest.mark.unit


def _plan(kind: str) -> dict:
    payload = DecomposeTaskPayload(
        description="Add a farewell endpoint",
        kind=kind,
        context={"repo": "/srv/shop", "base_ref": "main", "head_ref": "main", "environment": "staging"},
        use_llm=False,
    )
    return decompose_task(payload).model_dump(mode="json")


def test_a_real_plan_becomes_tasks_with_its_dag_and_bindings() -> None:
    plan = _plan("feature")
    specs = specs_from_plan(plan)
    assert [s.key for s in specs] == [step["id"] for step in plan["steps"]]
    by_key = {s.key: s for s in specs}
    step = {st["id"]: st for st in plan["steps"]}
    for key, spec in by_key.items():
        fields = ("capability", "request_type", "depends_on", "bindings")
        assert [getattr(spec, f) for f in fields] == [step[key][f] for f in fields]
    assert by_key["test"].bindings == {"ref": "implement.branch"}
    # The plan is a valid batch: its DAG and its bindings agree.
    assert validate_batch(specs)[0] == "implement"


def test_a_plan_that_does_not_fit_names_the_step_and_field() -> None:
    with pytest.raises(TaskArgumentError, match="no steps"):
        specs_from_plan({"kind": "feature"})
    with pytest.raises(TaskArgumentError, match=r"steps\[0\]\.key"):
        specs_from_plan({"steps": [{"id": "Bad Id", "capability": "x", "request_type": "Y"}]})


def test_a_binding_must_come_from_a_task_it_waits_for() -> None:
    free = TaskSpec(key="a", capability="x", request_type="Y")
    bound = TaskSpec(key="b", capability="x", request_type="Y", bindings={"ref": "a.branch"})
    with pytest.raises(TaskArgumentError, match="not a task it depends on"):
        validate_batch([free, bound])
    validate_batch([free, bound.model_copy(update={"depends_on": ["a"]})])


def test_bindings_are_filled_from_recorded_results() -> None:
    payload = {"repo": "/srv/shop", "ref": "placeholder"}
    filled = resolve_bindings(payload, {"ref": "implement.branch", "commit": "implement.head.sha"}, {
        "implement": {"branch": "devtools/t-1", "head": {"sha": "abc123"}},
    })  # fmt: skip
    assert filled == {"repo": "/srv/shop", "ref": "devtools/t-1", "commit": "abc123"}
    assert payload["ref"] == "placeholder"  # the task's own payload is left as it is
    with pytest.raises(TaskArgumentError, match="has no 'branch'"):
        resolve_bindings({}, {"ref": "implement.branch"}, {"implement": {"status": "ok"}})
    with pytest.raises(TaskArgumentError, match="has no result"):
        resolve_bindings({}, {"ref": "implement.branch"}, {})
