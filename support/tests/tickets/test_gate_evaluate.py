"""Gate evaluation (pure): verdicts passed, failed with every reason named, waiting for approval; which
artifacts each request type produces; what a failed gate does next; phase visit labels."""

from __future__ import annotations

from typing import Any

import pytest

from agent_orchestrator.tasks import Task
from agent_orchestrator.tickets import template_variables
from agent_orchestrator.tickets.gates import (
    MAX_CONTENT_BYTES,
    Approval,
    Gate,
    GateResult,
    artifacts_from_tasks,
    artifacts_of,
    bounded_content,
    decide,
    evaluate,
    parse_visit_label,
    visit_label,
)
from support.tests.tickets import gate_results as results
from support.tests.tickets.gate_results import task
from support.tests.tickets.helpers import make_ticket

pytestmark = pytest.mark.unit

COVERAGE = {"changed_lines_percent": 91.0, "changed_lines": 22, "covered_lines": 20, "files": {}}


def _gate(*criteria: dict[str, Any], on_fail: dict[str, Any] | None = None) -> Gate:
    return Gate.model_validate({"criteria": list(criteria), **({"on_fail": on_fail} if on_fail else {})})


INTEGRATION = _gate(
    {"kind": "tasks", "tasks": ["review", "tests", "deploy"]},
    {"kind": "threshold", "task": "review", "measure": "review.verdict", "equals": "approve"},
    {"kind": "threshold", "task": "tests", "measure": "tests.all_passed", "equals": True},
    {"kind": "threshold", "task": "tests", "measure": "coverage.changed_lines_percent", "min": 80},
    {"kind": "threshold", "task": "review", "measure": "review.secrets", "max": 0},
    {"kind": "artifact", "artifact": "deployment", "task": "deploy"},
    {"kind": "artifact", "artifact": "test_report"},
    on_fail={"action": "back_to", "phase": "IMPLEMENTATION"},
)


def _phase(
    *, review: dict | None = None, tests: dict | None = None, deploy: dict | None = None
) -> list[Task]:
    return [
        task("review", "REVIEW_CODE", review or results.review()),
        task("tests", "RUN_PIPELINE", tests or results.pipeline(coverage=COVERAGE)),
        task("deploy", "DEPLOY_SERVICE", deploy or results.deploy()),
    ]


def test_a_gate_whose_criteria_all_hold_passes() -> None:
    tasks = _phase()
    outcome = evaluate(INTEGRATION, tasks, artifacts_from_tasks(tasks, "INTEGRATION"))
    assert outcome.verdict == "passed", outcome.reasons
    assert [c.passed for c in outcome.criteria] == [True] * 7
    assert [c.detail for c in outcome.criteria] == [
        "tasks succeeded: review, tests, deploy",
        "review verdict approve (no findings on the changed lines)",
        "tests: 12 passed",
        "coverage of changed lines 91% (≥ 80%)",
        "no secrets found (≤ 0)",
        "deployment recorded (r-20250101-0002)",
        "test_report recorded (/data/pipelines/3f2a9c1b7d4e/log.txt)",
    ]
    coverage = outcome.criteria[3]
    assert (coverage.kind, coverage.name, coverage.expected) == (
        "threshold",
        "tests: coverage.changed_lines_percent",
        {"min": 80.0},
    )
    assert coverage.measured == {"changed_lines_percent": 91.0, "changed_lines": 22, "covered_lines": 20}
    assert outcome.summary == "gate passed: 7 criteria met"


def test_a_failed_gate_names_every_failed_criterion() -> None:
    low = {**COVERAGE, "changed_lines_percent": 61.5}
    tasks = _phase(
        review=results.review("comment", reason="1 warning(s): app.py:3 complexity"),
        tests=results.pipeline(status="failed", passed=10, failed=2, coverage=low),
        deploy=results.deploy("rolled_back"),
    )
    outcome = evaluate(INTEGRATION, tasks, artifacts_from_tasks(tasks, "INTEGRATION"))
    assert outcome.verdict == "failed"
    assert outcome.reasons == [
        "review verdict comment (1 warning(s): app.py:3 complexity), expected approve",
        "tests: 2 failed (status failed, exit code 1)",
        "coverage of changed lines 61.5% < 80%",
        "no deployment artifact from task deploy (its result's status is rolled_back)",
    ]
    assert outcome.summary.startswith("gate failed: review verdict comment")
    feedback = outcome.feedback("INTEGRATION")
    assert feedback["reasons"] == outcome.reasons and len(feedback["failed"]) == 4


def test_tasks_that_did_not_succeed_fail_the_criteria_that_read_them() -> None:
    tasks = _phase()
    tasks[2] = task(
        "deploy", "DEPLOY_SERVICE", None, status="failed", error="env:staging is locked by another run"
    )
    del tasks[0]  # no review task at all
    outcome = evaluate(INTEGRATION, tasks, artifacts_from_tasks(tasks, "INTEGRATION"))
    assert outcome.reasons == [
        "tasks not succeeded: no task review; deploy failed: env:staging is locked by another run",
        "review.verdict: no task review to measure",
        "review.secrets: no task review to measure",
        "no deployment artifact from task deploy (deploy failed: env:staging is locked by another run)",
    ]


def test_coverage_not_measured_fails_with_not_measured() -> None:
    gate = _gate(
        {"kind": "threshold", "task": "tests", "measure": "coverage.changed_lines_percent", "min": 80}
    )
    outcome = evaluate(gate, [task("tests", "RUN_PIPELINE", results.pipeline())], [])
    assert outcome.verdict == "failed"
    assert outcome.reasons == ["coverage of changed lines not measured (no coverage in the result)"]
    assert outcome.criteria[0].measured is None


def test_thresholds_on_the_wrong_result_or_an_unreadable_one_fail_naming_it() -> None:
    gate = _gate(
        {"kind": "threshold", "task": "tests", "measure": "review.verdict", "equals": "approve"},
        {"kind": "threshold", "task": "broken", "measure": "tests.failed", "max": 0},
    )
    tasks = [
        task("tests", "RUN_PIPELINE", results.pipeline()),
        task("broken", "RUN_PIPELINE", {"status": "passed"}),
    ]
    assert evaluate(gate, tasks, []).reasons == [
        "review.verdict reads REVIEW_CODE results; task tests is RUN_PIPELINE",
        "tests.failed: cannot measure task broken: the RUN_PIPELINE result has no `failed`",
    ]


def test_complexity_bounded_by_the_reviews_threshold() -> None:
    review = task("complexity", "REVIEW_CODE", results.review(), payload={"complexity_threshold": 5})
    within = _gate({"kind": "threshold", "task": "complexity", "measure": "review.max_complexity", "max": 10})
    outcome = evaluate(within, [review], [])
    assert outcome.verdict == "passed"
    assert (
        outcome.criteria[0].detail == "no changed function above the review's complexity threshold 5 (≤ 10)"
    )
    below = _gate({"kind": "threshold", "task": "complexity", "measure": "review.max_complexity", "max": 3})
    assert evaluate(below, [review], []).reasons == [
        "no changed function above the review's complexity threshold 5: not shown to be at most 3"
    ]


APPROVAL = _gate(
    {"kind": "threshold", "task": "tests", "measure": "tests.all_passed", "equals": True},
    {"kind": "approval", "question": "Ship {repo.name} to production?"},
)


def test_a_gate_waits_when_only_the_approval_is_undecided() -> None:
    tasks = [task("tests", "RUN_PIPELINE", results.pipeline())]
    variables = template_variables(make_ticket())
    waiting = evaluate(APPROVAL, tasks, [], variables=variables)
    assert waiting.verdict == "waiting"
    assert waiting.criteria[1].passed is None
    assert waiting.criteria[1].detail == "waiting for approval: Ship greeter to production?"
    assert waiting.summary == "gate waits for approval: waiting for approval: Ship greeter to production?"
    assert decide(APPROVAL, waiting, tasks).action == "wait"

    approved = evaluate(APPROVAL, tasks, [], Approval(approved=True, by="alice", comment="go"))
    assert approved.verdict == "passed"
    assert approved.criteria[1].detail == "approved by alice: go"
    assert approved.criteria[1].measured == {"approved": True, "by": "alice", "comment": "go"}

    rejected = evaluate(APPROVAL, tasks, [], Approval(approved=False, by="bob", comment="not on a Friday"))
    assert rejected.verdict == "failed" and rejected.reasons == ["rejected by bob: not on a Friday"]


def test_a_failed_criterion_fails_the_gate_even_while_the_approval_is_undecided() -> None:
    tasks = [task("tests", "RUN_PIPELINE", results.pipeline(status="failed", failed=1))]
    outcome = evaluate(APPROVAL, tasks, [])
    assert outcome.verdict == "failed"  # nobody is asked to approve a red build
    assert outcome.reasons == ["tests: 1 failed (status failed, exit code 1)"]


@pytest.mark.parametrize(
    ("request_type", "result", "expected"),
    [
        ("REVIEW_CODE", results.review(), [("review", f"{results.BASE}..{results.COMMIT}")]),
        (
            "RUN_PIPELINE",
            results.pipeline(status="failed", failed=1),
            [("test_report", "/data/pipelines/3f2a9c1b7d4e/log.txt")],
        ),
        ("DEPLOY_SERVICE", results.deploy(), [("deployment", "r-20250101-0002")]),
        ("DEPLOY_SERVICE", results.deploy("rolled_back"), []),
        ("DEPLOY_ARTIFACT", results.deploy(), [("deployment", "r-20250101-0002")]),
        ("GENERATE_DOCS", results.docs(), [("document", f"api@{results.COMMIT}")]),
        ("UPDATE_README", results.readme(), [("document", "README.md")]),
        ("GENERATE_CODE", results.change(), [("branch", "devtools/generate-shout")]),
        ("REFACTOR_CODE", results.change("no_change"), []),
        ("VALIDATE_BUILD", results.build(), [("build", "b7c1d2e3f4a5")]),
        ("VALIDATE_BUILD", results.build("failed"), []),
        ("DECOMPOSE_TASK", results.plan(), [("plan", "docs")]),
        ("HEALTH_CHECK", results.health_check(), []),
    ],
)
def test_artifacts_of_a_task_by_its_request_type(
    request_type: str, result: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    found = artifacts_of(task("t", request_type, result))
    assert [(kind, reference) for kind, reference, _ in found] == expected
    assert all(content == result for _, _, content in found)


def test_a_task_that_did_not_succeed_produced_nothing() -> None:
    assert artifacts_of(task("t", "REVIEW_CODE", results.review(), status="failed")) == []
    assert artifacts_of(task("t", "REVIEW_CODE", None)) == []


def test_large_results_are_stored_as_a_bounded_summary() -> None:
    big = results.docs(markdown="# API\n" + "x" * (MAX_CONTENT_BYTES + 10))
    (_, _, content) = artifacts_of(task("docs", "GENERATE_DOCS", big))[0]
    assert content["truncated"] is True and content["bytes"] > MAX_CONTENT_BYTES
    assert content["doc_type"] == "api" and content["commit"] == results.COMMIT
    assert content["markdown"].startswith("# API\nxxx") and content["markdown"].endswith(
        f"({len(big['markdown'])} chars)"
    )
    assert content["sources"] == {"omitted": "list of 1 items"}
    assert bounded_content({"small": 1}) == {"small": 1}


def _failed(gate: Gate, tasks: list[Task]) -> GateResult:
    outcome = evaluate(gate, tasks, artifacts_from_tasks(tasks, "INTEGRATION"))
    assert outcome.verdict == "failed"
    return outcome


def test_back_to_an_earlier_phase_until_the_rounds_are_spent() -> None:
    tasks = _phase(tests=results.pipeline(status="failed", failed=2, coverage=COVERAGE))
    outcome = _failed(INTEGRATION, tasks)
    first = decide(INTEGRATION, outcome, tasks, failed_rounds=0)
    assert (first.action, first.phase) == ("back_to", "IMPLEMENTATION")
    assert first.reason.endswith("; back to IMPLEMENTATION (round 1 of 3)")
    spent = decide(INTEGRATION, outcome, tasks, failed_rounds=3)
    assert spent.action == "block" and "(failed 4 times, back_to allows 3)" in spent.reason


def test_retry_names_the_tasks_behind_the_failed_criteria() -> None:
    gate = _gate(
        {"kind": "tasks", "tasks": ["review", "tests", "deploy"]},
        {"kind": "threshold", "task": "tests", "measure": "tests.all_passed", "equals": True},
        {"kind": "artifact", "artifact": "deployment"},
        on_fail={"action": "retry", "max_rounds": 2},
    )
    tasks = _phase(tests=results.pipeline(status="failed", failed=1), deploy=results.deploy("rolled_back"))
    decision = decide(gate, _failed(gate, tasks), tasks, failed_rounds=1)
    assert (decision.action, decision.retry) == ("retry", ["tests", "deploy"])
    assert decision.reason.endswith("retrying tests, deploy (round 2 of 2)")
    assert decide(gate, _failed(gate, tasks), tasks, failed_rounds=2).action == "block"


def test_a_rejection_is_not_retried_and_block_is_the_default() -> None:
    tasks = [task("tests", "RUN_PIPELINE", results.pipeline())]
    retrying = _gate(
        *[c.model_dump() for c in APPROVAL.criteria], on_fail={"action": "retry", "max_rounds": 3}
    )
    rejected = evaluate(retrying, tasks, [], Approval(approved=False, by="bob"))
    assert decide(retrying, rejected, tasks).action == "block"
    assert APPROVAL.on_fail.action == "block"
    outcome = evaluate(APPROVAL, tasks, [], Approval(approved=False, by="bob"))
    assert decide(APPROVAL, outcome, tasks).action == "block"
    assert (
        decide(APPROVAL, evaluate(APPROVAL, tasks, [], Approval(approved=True, by="a")), tasks).action
        == "advance"
    )


def test_phase_visit_labels() -> None:
    assert visit_label("INTEGRATION") == "INTEGRATION"
    assert visit_label("INTEGRATION", 3) == "INTEGRATION#3"
    assert parse_visit_label("INTEGRATION#3") == ("INTEGRATION", 3)
    assert parse_visit_label("INTEGRATION") == ("INTEGRATION", 1)
    for bad in ("integration", "INTEGRATION#0", "INTEGRATION#x", ""):
        with pytest.raises(ValueError, match="not a phase visit label"):
            parse_visit_label(bad)
    with pytest.raises(ValueError, match="visit must be 1 to 9999"):
        visit_label("INTEGRATION", 0)
