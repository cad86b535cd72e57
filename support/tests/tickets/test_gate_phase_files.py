"""Gates in phase files: a valid `gate:` block loads onto `Phase.gate` (coverage and approval included),
the default file's gates are what the agents can prove today, and every bad block fails at load with
the file, the key path and the reason."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent_orchestrator.tickets import PhaseFileError, load_phase_file, load_phase_machine
from agent_orchestrator.tickets.gates import ApprovalCriterion, BackTo, Retry, ThresholdCriterion
from support.tests.tickets.helpers import small_phases

pytestmark = pytest.mark.unit

Mutation = Callable[[dict[str, Any]], object]


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "gated.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _gated(data: dict[str, Any], phase: int, *criteria: dict[str, Any], **gate: Any) -> None:
    data["phases"][phase]["gate"] = {"criteria": list(criteria), **gate}


def _threshold(task: str, measure: str, **comparison: Any) -> dict[str, Any]:
    return {"kind": "threshold", "task": task, "measure": measure, **comparison}


def test_a_gate_of_every_kind_loads_onto_the_phase(tmp_path: Path) -> None:
    data = small_phases()
    _gated(
        data,
        0,
        _threshold("a", "coverage.changed_lines_percent", min=80),
        _threshold("b", "tests.all_passed", equals=True),
        {"kind": "artifact", "artifact": "test_report"},
        on_fail={"action": "retry", "max_rounds": 2},
    )
    _gated(
        data,
        1,
        {"kind": "tasks", "tasks": ["c"]},
        {"kind": "artifact", "artifact": "review", "task": "c"},
        _threshold("c", "review.verdict", equals="approve"),
        _threshold("c", "review.secrets", max=0),
        {"kind": "approval", "question": "Merge {repo.name} at {context.a.commit}?"},
        on_fail={"action": "back_to", "phase": "START"},
    )
    machine = load_phase_file(_write(tmp_path, data))
    start, work = machine.phase("START").gate, machine.phase("WORK").gate
    assert start is not None and work is not None
    assert start.criteria[0] == ThresholdCriterion(
        kind="threshold", task="a", measure="coverage.changed_lines_percent", min=80
    )
    assert start.on_fail == Retry(action="retry", max_rounds=2)
    assert isinstance(work.approval, ApprovalCriterion)
    assert work.on_fail == BackTo(action="back_to", phase="START", max_rounds=3)
    # A gate that sends the ticket back declares that move.
    assert machine.allowed("WORK") == ["END", "START", "CANCELLED"]
    assert machine.phase("WORK").back_to == "START" and machine.phase("START").back_to is None
    assert machine.phase("END").gate is None


def test_the_default_phase_file_gates_what_the_agents_return_today() -> None:
    machine = load_phase_machine("default")
    gates = {p.name: p.gate for p in machine.phases if p.gate is not None}
    assert set(gates) == {"IMPLEMENTATION", "INTEGRATION", "REFACTORING"}
    integration = gates["INTEGRATION"]
    named = [
        (c.kind, getattr(c, "task", None), getattr(c, "measure", getattr(c, "artifact", None)))
        for c in integration.criteria
    ]
    assert named == [
        ("threshold", "review", "review.verdict"),
        ("threshold", "tests", "tests.all_passed"),
        ("artifact", "deploy", "deployment"),
        ("threshold", "deploy", "deploy.healthy"),
        ("threshold", "verify", "health.healthy"),
    ]
    # Without an LLM a failed integration goes to a person (the same branch would be reviewed again).
    assert integration.on_fail.action == "block"
    assert "IMPLEMENTATION" not in machine.allowed("INTEGRATION")
    assert gates["REFACTORING"].criteria == [
        ThresholdCriterion(kind="threshold", task="complexity", measure="review.max_complexity", max=10)
    ]
    assert gates["IMPLEMENTATION"].on_fail.action == "block"
    assert isinstance(gates["IMPLEMENTATION"].approval, ApprovalCriterion)  # a person sends it to staging
    measures = [c.measure for g in gates.values() for c in g.criteria if isinstance(c, ThresholdCriterion)]
    assert not any(m.startswith("coverage.") for m in measures)  # measured and recorded, not a threshold
    assert [name for name, g in gates.items() if g.approval] == ["IMPLEMENTATION"]


def test_a_phase_with_expand_may_name_any_task_key(tmp_path: Path) -> None:
    data = yaml.safe_load((Path(__file__).parents[3] / "config" / "phases" / "planned.yaml").read_text())
    _gated(
        data,
        1,
        {"kind": "tasks", "tasks": ["docs-api", "docs.guide"]},
        _threshold("tests", "tests.all_passed", equals=True),
        {"kind": "artifact", "artifact": "document", "task": "docs-api"},
    )
    gate = load_phase_file(_write(tmp_path, data)).phase("EXECUTE").gate
    assert gate is not None and len(gate.criteria) == 3


def _work(*criteria: dict[str, Any], **gate: Any) -> Mutation:
    return lambda d: _gated(d, 1, *criteria, **gate)


def _hold(d: dict[str, Any]) -> None:
    d["phases"].insert(2, {"name": "HOLD", "status": "blocked", "return_to_previous": True})
    _gated(d, 2, {"kind": "approval", "question": "Go on?"})


def _back_to_hold(d: dict[str, Any]) -> None:
    d["phases"].insert(1, {"name": "HOLD", "status": "blocked", "return_to_previous": True})
    _gated(d, 2, {"kind": "tasks", "tasks": ["c"]}, on_fail={"action": "back_to", "phase": "HOLD"})


def _complexity(max_: int, **payload: Any) -> Mutation:
    def mutate(d: dict[str, Any]) -> None:
        d["phases"][1]["tasks"][0]["payload"].update(payload)
        _gated(d, 1, _threshold("c", "review.max_complexity", max=max_))

    return mutate


CRITERION = "phases[1].gate.criteria[0]"
TASK_C = {"kind": "tasks", "tasks": ["c"]}
BAD_GATES: list[tuple[str, Mutation, str, str]] = [
    ("terminal phase", lambda d: _gated(d, 2, {"kind": "tasks", "tasks": ["c"]}), "phases[2].gate",
     "a terminal phase (status done) has no gate"),
    ("blocked phase", _hold, "phases[2].gate", "a blocked phase waits for a person, not for a gate"),
    ("no criteria", _work(), "phases[1].gate.criteria", "at least 1 item"),
    ("unknown kind", _work({"kind": "coverage", "min": 80}), f"{CRITERION}.kind",
     "unknown value 'coverage' (one of: 'tasks', 'artifact', 'threshold', 'approval')"),
    ("missing kind", _work({"tasks": ["c"]}), CRITERION, "missing required key 'kind'"),
    ("unknown key", _work(_threshold("c", "review.verdict", equal="approve")), f"{CRITERION}.equal",
     "unknown key 'equal' (allowed: kind, task, measure, min, max, equals)"),
    ("task of another phase", _work({"kind": "tasks", "tasks": ["c", "a"]}), f"{CRITERION}.tasks[1]",
     "unknown task 'a' (tasks of WORK: c)"),
    ("threshold on an unknown task", _work(_threshold("x", "tests.failed", max=0)), f"{CRITERION}.task",
     "unknown task 'x' (tasks of WORK: c)"),
    ("artifact of an unknown task", _work({"kind": "artifact", "artifact": "review", "task": "z"}),
     f"{CRITERION}.task", "unknown task 'z'"),
    ("artifact the task does not make", _work({"kind": "artifact", "artifact": "test_report", "task": "c"}),
     f"{CRITERION}.artifact", "task 'c' (REVIEW_CODE) produces review, not test_report (made by RUN_PIPEL"),
    ("artifact no task makes", _work({"kind": "artifact", "artifact": "deployment"}), f"{CRITERION}.artifact",
     "no task of WORK produces a deployment (made by DEPLOY_ARTIFACT, DEPLOY_SERVICE)"),
    ("unknown artifact kind", _work({"kind": "artifact", "artifact": "binary"}), f"{CRITERION}.artifact",
     "Input should be 'branch', 'test_report'"),
    ("unknown measure", _work(_threshold("c", "review.coverage", min=80)), f"{CRITERION}.measure",
     "unknown measure 'review.coverage' (known: build.succeeded, coverage.changed_lines_percent"),
    ("measure of another result", _work(_threshold("c", "tests.all_passed", equals=True)),
     f"{CRITERION}.measure", "tests.all_passed reads RUN_PIPELINE results; task 'c' is REVIEW_CODE"),
    ("threshold without a comparison", _work(_threshold("c", "review.secrets")), CRITERION,
     "a threshold needs min, max or equals"),
    ("equals with min", _work(_threshold("c", "review.secrets", min=0, equals=0)), CRITERION,
     "equals cannot be combined with min or max"),
    ("min above max", _work(_threshold("c", "review.secrets", min=3, max=1)), CRITERION,
     "min 3 is above max 1"),
    ("min on a text", _work(_threshold("c", "review.verdict", min=3)), f"{CRITERION}.min",
     "review.verdict (the review's verdict) takes equals, not min"),
    ("flag equals a text", lambda d: _gated(d, 0, _threshold("a", "tests.all_passed", equals="yes")),
     "phases[0].gate.criteria[0].equals", "tests.all_passed is true or false, not 'yes'"),
    ("number equals a flag", _work(_threshold("c", "review.secrets", equals=False)), f"{CRITERION}.equals",
     "review.secrets is a number, not False"),
    ("not a verdict", _work(_threshold("c", "review.verdict", equals="approved")), f"{CRITERION}.equals",
     "review.verdict is one of approve, comment, request_changes, not 'approved'"),
    ("quoted number", _work(_threshold("c", "review.secrets", max="0")), f"{CRITERION}.max",
     "Input should be a valid number"),
    ("unbounded number", _work(_threshold("c", "review.findings", max=1e12)), f"{CRITERION}.max",
     "less than or equal to 1000000000"),
    ("complexity with min", _work(_threshold("c", "review.max_complexity", min=2)), f"{CRITERION}.min",
     "takes max, not min"),
    ("complexity below the review's threshold", _complexity(3, complexity_threshold=5), f"{CRITERION}.max",
     "max 3 is below the complexity_threshold 5 of task 'c'"),
    ("complexity below the default threshold", _complexity(8), f"{CRITERION}.max",
     "max 8 is below the complexity_threshold 10 of task 'c'"),
    ("two approvals", _work({"kind": "approval", "question": "a?"}, {"kind": "approval", "question": "b?"}),
     "phases[1].gate.criteria[1]", "a gate asks one approval question"),
    ("approval naming this phase's task", _work({"kind": "approval", "question": "ok {context.c.verdict}?"}),
     f"{CRITERION}.question", "'c' is not a task of an earlier phase"),
    ("approval with an unknown variable", _work({"kind": "approval", "question": "ok {ticket.owner}?"}),
     f"{CRITERION}.question", "unknown ticket field 'owner'"),
    ("back_to a later phase", lambda d: _gated(d, 0, {"kind": "tasks", "tasks": ["a"]},
                                               on_fail={"action": "back_to", "phase": "WORK"}),
     "phases[0].gate.on_fail.phase", "WORK is a later phase: back_to names an earlier phase (before START"),
    ("back_to itself", _work(TASK_C, on_fail={"action": "back_to", "phase": "WORK"}),
     "phases[1].gate.on_fail.phase", "WORK is this phase"),
    ("back_to undeclared", _work(TASK_C, on_fail={"action": "back_to", "phase": "NOPE"}),
     "phases[1].gate.on_fail.phase", "undeclared phase 'NOPE' (declared: START, WORK, END, CANCELLED)"),
    ("back_to a blocked phase", _back_to_hold, "phases[2].gate.on_fail.phase",
     "HOLD is not a working phase (status blocked)"),
    ("unknown action", _work(TASK_C, on_fail={"action": "skip"}),
     "phases[1].gate.on_fail.action", "unknown value 'skip' (one of: 'back_to', 'retry', 'block')"),
    ("too many rounds", _work(TASK_C, on_fail={"action": "retry", "max_rounds": 50}),
     "phases[1].gate.on_fail.max_rounds", "less than or equal to 20"),
    ("back_to without a phase", _work(TASK_C, on_fail={"action": "back_to"}),
     "phases[1].gate.on_fail.phase", "missing required key"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("mutate", "key", "reason"), [c[1:] for c in BAD_GATES], ids=[c[0] for c in BAD_GATES]
)
def test_a_bad_gate_fails_at_load_with_file_key_and_reason(
    tmp_path: Path, mutate: Mutation, key: str, reason: str
) -> None:
    data = small_phases()
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(PhaseFileError) as failed:
        load_phase_file(path)
    error = failed.value
    assert (error.file, error.key) == (str(path), key), error.reason
    assert reason in error.reason
    assert str(error).startswith(f"{path}: {key}: ")
