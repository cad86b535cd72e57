"""The orchestrator agent's DECOMPOSE_TASK, AGGREGATE_RESULTS and GET_STATUS skills."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage
from pydantic import ValidationError

from services.orchestrator_agent.aggregate import aggregate_results
from services.orchestrator_agent.catalogue import (
    CatalogueError,
    PlanGraphError,
    UnknownTaskKind,
    default_catalogue,
    load_catalogue,
    topological_stages,
)
from services.orchestrator_agent.decompose import decompose_task
from services.orchestrator_agent.models import (
    AggregateResultsPayload,
    DecomposeTaskPayload,
    GetStatusPayload,
    PlanStep,
)
from services.orchestrator_agent.status import AgentActivity, UnknownAgent, get_status

pytestmark = pytest.mark.integration

CONTEXT = {"repo": "/srv/repos/shop", "base_ref": "main", "head_ref": "feature/x", "environment": "staging"}
CATALOGUE = default_catalogue()


def assert_valid_dag(steps: list[PlanStep], order: list[str]) -> None:
    assert [s.id for s in steps] == order
    position = {step_id: i for i, step_id in enumerate(order)}
    for step in steps:
        for dep in step.depends_on:
            assert position[dep] < position[step.id], f"{step.id} runs before its dependency {dep}"


@pytest.mark.parametrize("kind", sorted(CATALOGUE.kinds))
def test_every_catalogue_kind_gives_a_valid_ordered_plan(kind: str) -> None:
    result = decompose_task(DecomposeTaskPayload(description="Do the thing", kind=kind, context=CONTEXT))
    assert result.source == "rules" and result.kind == kind and result.notes == []
    assert_valid_dag(result.steps, result.order)
    assert sorted(result.order) == sorted(s.id for s in CATALOGUE.kinds[kind].subtasks)
    assert [i for stage in result.stages for i in stage] == result.order
    for step in result.steps:
        assert CATALOGUE.request_problem(step.capability, step.request_type) is None


def test_rule_plan_fills_payloads_from_context_and_stages_parallel_steps() -> None:
    result = decompose_task(DecomposeTaskPayload(description="Add CSV export to reports", context=CONTEXT))
    assert result.kind == "feature" and "inferred from the description" in result.notes[0]
    by_id = {s.id: s for s in result.steps}
    assert by_id["implement"].payload == {
        "repo": "/srv/repos/shop",
        "base_ref": "main",
        "instruction": "Add CSV export to reports",
    }
    assert by_id["docs"].payload == {"repo": "/srv/repos/shop", "doc_type": "api"}
    # The review compares the base with the branch the implement step will create.
    assert by_id["review"].payload == {"repo": "/srv/repos/shop", "base": "main"}
    assert by_id["review"].bindings == {"head": "implement.branch"}
    assert by_id["docs"].bindings == {"ref": "implement.branch"}  # implement is an indirect dependency
    # test and review both wait only for implement: one parallel stage.
    assert result.stages[:2] == [["implement"], ["test", "review"]]
    assert result.order[-1] == "report"


def test_kind_inference_and_missing_context() -> None:
    security = decompose_task(
        DecomposeTaskPayload(description="Fix the SQL injection vulnerability in search")
    )
    assert security.kind == "security_fix"
    assert any("context lacks base_ref, head_ref, repo" in n for n in security.notes)
    assert decompose_task(DecomposeTaskPayload(description="Deploy v2 to staging")).kind == "release"
    assert decompose_task(DecomposeTaskPayload(description="The login page crashes")).kind == "bugfix"


def test_unknown_or_unguessable_kind_is_a_clear_error() -> None:
    with pytest.raises(
        UnknownTaskKind, match="kind: unknown task kind 'migration'; known kinds: bugfix, docs"
    ):
        decompose_task(DecomposeTaskPayload(description="Move the DB", kind="migration"))
    with pytest.raises(UnknownTaskKind, match="matches no kind; give `kind`"):
        decompose_task(DecomposeTaskPayload(description="Ponder the universe"))
    # Even with a model, an unknown kind is the caller's error, not something to improvise on.
    model = FakeListChatModel(responses=["{}"])
    with pytest.raises(UnknownTaskKind):
        decompose_task(DecomposeTaskPayload(description="x", kind="migration"), chat_model=model)
    with pytest.raises(ValidationError, match="description"):
        DecomposeTaskPayload(description="  ")


def llm_plan(*steps: dict[str, object]) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter([AIMessage(content=json.dumps({"steps": list(steps)}))]))


def test_a_models_valid_plan_is_used_in_dependency_order() -> None:
    model = llm_plan(
        {
            "id": "deploy",
            "title": "Deploy",
            "capability": "infrastructure",
            "request_type": "DEPLOY_SERVICE",
            "depends_on": ["build"],
            "payload": {"environment": "staging"},
        },
        {
            "id": "build",
            "title": "Build",
            "capability": "cicd",
            "request_type": "VALIDATE_BUILD",
            "depends_on": [],
            "payload": {"repo": "/srv/repos/shop"},
        },
        {
            "id": "check",
            "title": "Health",
            "capability": "infrastructure",
            "request_type": "HEALTH_CHECK",
            "depends_on": ["deploy"],
        },
    )
    result = decompose_task(DecomposeTaskPayload(description="Ship it", context=CONTEXT), chat_model=model)
    assert result.source == "llm" and result.notes == []
    assert result.order == ["build", "deploy", "check"]
    assert result.steps[1].payload == {"environment": "staging"}


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ("I would first build, then deploy.", "contains no JSON"),
        (
            json.dumps(
                {
                    "steps": [
                        {
                            "id": "a",
                            "title": "A",
                            "capability": "cicd",
                            "request_type": "RUN_PIPELINE",
                            "depends_on": ["b"],
                        },
                        {
                            "id": "b",
                            "title": "B",
                            "capability": "cicd",
                            "request_type": "RUN_PIPELINE",
                            "depends_on": ["a"],
                        },
                    ]
                }
            ),
            "dependency cycle among steps: a, b",
        ),
        (
            json.dumps(
                {"steps": [{"id": "a", "title": "A", "capability": "magic", "request_type": "DO_IT"}]}
            ),
            "unknown capability 'magic'",
        ),
        (
            json.dumps(
                {"steps": [{"id": "a", "title": "A", "capability": "cicd", "request_type": "REVIEW_CODE"}]}
            ),
            "does not serve 'REVIEW_CODE'",
        ),
        (json.dumps({"steps": []}), "does not match PlanDraft: steps"),
        (
            json.dumps(
                {
                    "steps": [
                        {"id": "a", "title": "A", "capability": "cicd", "request_type": "RUN_PIPELINE"},
                        {
                            "id": "b",
                            "title": "B",
                            "capability": "cicd",
                            "request_type": "RUN_PIPELINE",
                            "bindings": {"ref": "a.branch"},
                        },
                    ]
                }
            ),
            "binding 'ref' reads step 'a', which it does not wait for",
        ),
    ],
)
def test_an_invalid_model_plan_falls_back_to_rules_with_a_note(answer: str, why: str) -> None:
    model = GenericFakeChatModel(messages=iter([AIMessage(content=answer)]))
    result = decompose_task(
        DecomposeTaskPayload(description="Deploy v2", kind="release", context=CONTEXT), chat_model=model
    )
    assert result.source == "rules" and result.kind == "release"
    assert why in result.notes[0] and "rule-based plan" in result.notes[0]
    assert result.order == [s.id for s in result.steps] and result.order[0] == "test"


def test_use_llm_false_skips_the_model() -> None:
    model = GenericFakeChatModel(messages=iter([]))  # would raise if called
    result = decompose_task(
        DecomposeTaskPayload(description="x", kind="docs", use_llm=False), chat_model=model
    )
    assert result.source == "rules" and result.stages[0] == ["api", "user_guide", "deployment_guide"]


def test_dag_validation_and_bad_catalogues(tmp_path: Path) -> None:
    def step(i: str, *deps: str) -> PlanStep:
        return PlanStep(id=i, title=i, capability="cicd", request_type="RUN_PIPELINE", depends_on=list(deps))

    assert topological_stages([step("c", "a", "b"), step("a"), step("b", "a")]) == [["a"], ["b"], ["c"]]
    with pytest.raises(PlanGraphError, match="depends on itself"):
        topological_stages([step("a", "a")])
    with pytest.raises(PlanGraphError, match="depends on unknown steps: zz"):
        topological_stages([step("a", "zz")])
    with pytest.raises(PlanGraphError, match="duplicate step ids: a"):
        topological_stages([step("a"), step("a")])
    cyclic = tmp_path / "cat.yaml"
    cyclic.write_text(
        "capabilities: {cicd: [RUN_PIPELINE]}\n"
        "kinds:\n  loop:\n    description: d\n    subtasks:\n"
        "      - {id: a, title: A, capability: cicd, request_type: RUN_PIPELINE, depends_on: [b]}\n"
        "      - {id: b, title: B, capability: cicd, request_type: RUN_PIPELINE, depends_on: [a]}\n"
    )
    with pytest.raises(CatalogueError, match=r"kinds\.loop: dependency cycle among steps: a, b"):
        load_catalogue(cyclic)
    unbound = tmp_path / "unbound.yaml"
    unbound.write_text(
        "capabilities: {cicd: [RUN_PIPELINE]}\n"
        "kinds:\n  k:\n    description: d\n    subtasks:\n"
        "      - {id: a, title: A, capability: cicd, request_type: RUN_PIPELINE}\n"
        "      - {id: b, title: B, capability: cicd, request_type: RUN_PIPELINE, bindings: {ref: a}}\n"
    )
    with pytest.raises(CatalogueError, match=r"binding 'ref' must be '<step>\.<result field>'"):
        load_catalogue(unbound)
    with pytest.raises(CatalogueError, match="No such file"):
        load_catalogue(tmp_path / "missing.yaml")


def test_aggregation_puts_failures_first_and_reports_partial() -> None:
    payload = AggregateResultsPayload.model_validate(
        {
            "title": "PR 42",
            "results": [
                {
                    "source_agent": "code-review",
                    "request_type": "REVIEW_CODE",
                    "status": "success",
                    "result": {"verdict": "approve", "findings": []},
                    "processing_time_ms": 120,
                },
                {
                    "agent": "cicd",
                    "step": "test",
                    "request_type": "RUN_PIPELINE",
                    "status": "error",
                    "error": "2 tests failed: test_a, test_b",
                    "processing_time_ms": 800,
                },
                {"agent": "documentation", "status": "timeout", "error": "no answer within 30s"},
                {
                    "agent": "feature-dev",
                    "status": "success",
                    "result": {"outcome": "committed", "commit": "abc"},
                },
            ],
        }
    )
    result = aggregate_results(payload)
    assert result.status == "partial"
    assert result.counts == {"error": 1, "timeout": 1, "rejected": 0, "partial": 0, "success": 2}
    assert [i.agent for i in result.items] == ["cicd", "documentation", "code-review", "feature-dev"]
    assert result.items[0].summary == "2 tests failed: test_a, test_b"
    assert result.items[2].summary == "verdict: approve"
    assert result.items[3].summary == "outcome: committed; commit: abc"
    assert result.total_processing_time_ms == 920
    assert result.report.startswith("# PR 42\n\n**Overall: partial** (1 error, 1 timeout, 2 success; 920 ms")
    assert "| error | cicd | test | RUN_PIPELINE | 2 tests failed: test_a, test_b |" in result.report


def test_aggregation_overall_status() -> None:
    def agg(*statuses: str) -> str:
        items = [{"agent": f"a{i}", "status": s, "error": "e"} for i, s in enumerate(statuses)]
        return aggregate_results(AggregateResultsPayload.model_validate({"results": items})).status.value

    assert agg("success", "success") == "success"
    assert agg("error", "rejected") == "error"
    assert agg("partial", "timeout") == "partial"
    with pytest.raises(ValidationError, match="results"):
        AggregateResultsPayload.model_validate({"results": []})
    with pytest.raises(ValidationError, match="status"):
        AggregateResultsPayload.model_validate({"results": [{"agent": "x", "status": "great"}]})


async def test_status_of_this_agent_without_a_registry() -> None:
    activity = AgentActivity(llm="openai:gpt-4o-mini")
    activity.record("DECOMPOSE_TASK")
    activity.record("DECOMPOSE_TASK")
    activity.record("AGGREGATE_RESULTS")
    view = await get_status(GetStatusPayload(), activity=activity)
    assert view.source == "self" and view.agent_id == "orchestrator" and view.llm == "openai:gpt-4o-mini"
    assert view.requests_handled == {"AGGREGATE_RESULTS": 1, "DECOMPOSE_TASK": 2}
    assert "release" in view.task_kinds and view.uptime_seconds is not None
    with pytest.raises(UnknownAgent, match="no registry configured"):
        await get_status(GetStatusPayload(agent_id="cicd"), activity=activity)
