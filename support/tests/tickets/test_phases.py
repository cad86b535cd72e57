"""Phase files: the default one loads and does real work; every kind of mistake fails at load with
the file, the key path and the reason; the state machine allows exactly what is declared."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent_orchestrator.tickets import (
    PHASES_DIR,
    PhaseFileError,
    TicketArgumentError,
    TicketStatus,
    TransitionRefused,
    VariableError,
    load_phase_file,
    load_phase_machine,
    template_variables,
)
from support.tests.tickets.helpers import make_ticket, small_phases

pytestmark = pytest.mark.unit

WORK_PHASES = ["INITIAL", "IMPLEMENTATION", "INTEGRATION", "REFACTORING"]


def _write(tmp_path: Path, data: dict[str, Any] | str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def test_default_phase_file_loads_with_the_declared_chain() -> None:
    machine = load_phase_machine("default")
    assert machine.initial == "INITIAL"
    assert machine.names == [*WORK_PHASES, "DONE", "BLOCKED", "CANCELLED"]
    chain = ["INITIAL"]
    while machine.phase(chain[-1]).next:
        (following,) = machine.phase(chain[-1]).next
        chain.append(following)
    assert chain == [*WORK_PHASES, "DONE"]
    assert machine.from_any_open == ("BLOCKED", "CANCELLED")
    assert {name: machine.status_of(name) for name in ("INITIAL", "BLOCKED", "DONE", "CANCELLED")} == {
        "INITIAL": TicketStatus.OPEN,
        "BLOCKED": TicketStatus.BLOCKED,
        "DONE": TicketStatus.DONE,
        "CANCELLED": TicketStatus.CANCELLED,
    }
    assert [p for p in machine.names if machine.phase(p).terminal] == ["DONE", "CANCELLED"]
    assert machine.file == "config/phases/default.yaml"


@pytest.mark.parametrize("phase", WORK_PHASES)
def test_blocked_and_cancelled_are_reachable_from_every_open_phase(phase: str) -> None:
    machine = load_phase_machine("default")
    allowed = machine.allowed(phase)
    assert "BLOCKED" in allowed and "CANCELLED" in allowed
    machine.check(phase, "BLOCKED")
    machine.check(phase, "CANCELLED")
    # From BLOCKED: back to where the ticket was blocked, or cancelled; nowhere else.
    assert machine.allowed("BLOCKED", previous=phase) == [phase, "CANCELLED"]
    others = [p for p in WORK_PHASES if p != phase]
    with pytest.raises(TransitionRefused) as refused:
        machine.check("BLOCKED", others[0], previous=phase)
    assert refused.value.allowed == [phase, "CANCELLED"]


@pytest.mark.parametrize("terminal", ["DONE", "CANCELLED"])
def test_nothing_leaves_a_terminal_phase(terminal: str) -> None:
    machine = load_phase_machine("default")
    assert machine.allowed(terminal) == []
    for target in machine.names:
        with pytest.raises(TransitionRefused) as refused:
            machine.check(terminal, target)
        assert refused.value.allowed == []
        assert "terminal" in str(refused.value)


def test_an_undeclared_transition_is_refused_naming_the_allowed_list() -> None:
    machine = load_phase_machine("default")
    with pytest.raises(TransitionRefused) as refused:
        machine.check("INITIAL", "INTEGRATION")
    error = refused.value
    assert (error.from_phase, error.to_phase) == ("INITIAL", "INTEGRATION")
    assert error.allowed == ["IMPLEMENTATION", "BLOCKED", "CANCELLED"]
    assert "allowed from INITIAL: IMPLEMENTATION, BLOCKED, CANCELLED" in str(error)
    with pytest.raises(TransitionRefused, match="unknown phase 'LIMBO'"):
        machine.check("INITIAL", "LIMBO")
    with pytest.raises(TransitionRefused, match="already in INITIAL"):
        machine.check("INITIAL", "INITIAL")


def test_default_tasks_render_from_the_ticket_and_earlier_context() -> None:
    machine = load_phase_machine("default")
    ticket = make_ticket(context={"change": {"head_commit": "c0ffee", "verdict": "approve"}})
    variables = template_variables(ticket)
    initial = {t.key: t for t in machine.tasks_for("INITIAL", variables)}
    assert initial["baseline_tests"].payload == {"repo": "/srv/repos/greeter", "ref": "main"}
    assert initial["outline"].title == "Outline greeter at main"
    (change,) = machine.tasks_for("IMPLEMENTATION", variables)
    assert change.payload["head"] == "feature/shout"
    integration = {t.key: t for t in machine.tasks_for("INTEGRATION", variables)}
    assert integration["deploy"].payload == {
        "environment": "staging",
        "repo": "/srv/repos/greeter",
        "ref": "c0ffee",
    }
    assert integration["deploy"].depends_on == ["review", "tests"]
    assert integration["deploy"].locks == ["repo:greeter", "env:staging"]
    assert integration["verify"].depends_on == ["deploy"]


def test_implementation_without_a_head_branch_names_the_missing_placeholder() -> None:
    machine = load_phase_machine("default")
    with pytest.raises(VariableError) as missing:
        machine.tasks_for("IMPLEMENTATION", template_variables(make_ticket(head_branch=None)))
    assert missing.value.placeholder == "{repo.head_branch}"
    assert "phase IMPLEMENTATION task change" in missing.value.where


def _agents() -> dict[str, Any]:
    from services.cicd.agent import agent as cicd
    from services.code_review.agent import agent as code_review
    from services.documentation.agent import agent as documentation
    from services.infrastructure.agent import agent as infrastructure

    return {a.agent_id: a for a in (cicd, code_review, documentation, infrastructure)}


def test_every_default_task_is_a_request_a_real_agent_serves_and_accepts() -> None:
    machine = load_phase_machine("default")
    variables = template_variables(make_ticket(context={"change": {"head_commit": "c0ffee"}}))
    agents = _agents()
    checked = 0
    for phase in machine.names:
        for task in machine.tasks_for(phase, variables):
            serving = [a for a in agents.values() if task.capability in a.capability_names]
            assert serving, f"{phase}.{task.key}: no agent has capability {task.capability}"
            spec = serving[0].handlers.get(task.request_type)
            assert spec is not None, (
                f"{phase}.{task.key}: {serving[0].agent_id} does not serve {task.request_type}"
            )
            assert spec.payload_model is not None
            spec.payload_model.model_validate(task.payload)  # the agent's own payload check (422 otherwise)
            checked += 1
    assert checked == 12  # 3 + 1 + 4 + 4: INITIAL, IMPLEMENTATION, INTEGRATION, REFACTORING


Mutation = Callable[[dict[str, Any]], None]


def _task(data: dict[str, Any], phase: int, task: int) -> dict[str, Any]:
    return data["phases"][phase]["tasks"][task]


BAD_FILES: list[tuple[str, Mutation, str, str]] = [
    (
        "unknown top-level key",
        lambda d: d.update(phase_order=[]),
        "phase_order",
        "unknown key 'phase_order' (allowed: description, from_any_open, phases)",
    ),
    (
        "unknown task key",
        lambda d: _task(d, 0, 1).update(dependson=["a"]),
        "phases[0].tasks[1].dependson",
        "unknown key 'dependson' (allowed: key, title, capability, request_type, payload, depends_on",
    ),
    (
        "unknown phase key",
        lambda d: d["phases"][1].update(exit_criteria={}),
        "phases[1].exit_criteria",
        "unknown key 'exit_criteria'",
    ),
    (
        "missing required key",
        lambda d: _task(d, 0, 0).pop("capability"),
        "phases[0].tasks[0].capability",
        "missing required key",
    ),
    (
        "max_attempts out of bounds",
        lambda d: _task(d, 0, 0).update(max_attempts=0),
        "phases[0].tasks[0].max_attempts",
        "greater than or equal to 1",
    ),
    (
        "timeout given as a string",
        lambda d: _task(d, 0, 0).update(timeout_seconds="60"),
        "phases[0].tasks[0].timeout_seconds",
        "valid number",
    ),
    (
        "unknown variable namespace",
        lambda d: _task(d, 0, 0)["payload"].update(ref="{env.branch}"),
        "phases[0].tasks[0].payload.ref",
        "unknown variable namespace 'env' in {env.branch} (known: ticket, repo, context)",
    ),
    (
        "unknown ticket field",
        lambda d: _task(d, 0, 0).update(title="Fix {ticket.owner}"),
        "phases[0].tasks[0].title",
        "unknown ticket field 'owner'",
    ),
    (
        "unknown repo field",
        lambda d: _task(d, 0, 0)["payload"].update(files=["{repo.url}"]),
        "phases[0].tasks[0].payload.files[0]",
        "unknown repo field 'url'",
    ),
    (
        "context of a task of the same phase",
        lambda d: _task(d, 0, 1)["payload"].update(ref="{context.a.commit}"),
        "phases[0].tasks[1].payload.ref",
        "'a' is not a task of an earlier phase (earlier tasks: none); 'a' is a task of this phase",
    ),
    (
        "context of a task of a later phase",
        lambda d: _task(d, 0, 0)["payload"].update(ref="{context.c.head_commit}"),
        "phases[0].tasks[0].payload.ref",
        "'c' is not a task of an earlier phase (earlier tasks: none); 'c' is a task of the later phase WORK",
    ),
    (
        "context of no task at all",
        lambda d: _task(d, 1, 0)["payload"].update(base="{context.review.base_commit}"),
        "phases[1].tasks[0].payload.base",
        "'review' is not a task of an earlier phase (earlier tasks: a, b)",
    ),
    (
        "stray brace",
        lambda d: _task(d, 0, 0)["payload"].update(repo="{repo.path"),
        "phases[0].tasks[0].payload.repo",
        "is not a placeholder",
    ),
    (
        "dependency on an unknown task",
        lambda d: _task(d, 0, 1).update(depends_on=["a", "zzz"]),
        "phases[0].tasks[1].depends_on[1]",
        "unknown task 'zzz' (tasks of START: a, b)",
    ),
    (
        "dependency on a task of another phase",
        lambda d: _task(d, 1, 0).update(depends_on=["a"]),
        "phases[1].tasks[0].depends_on[0]",
        "unknown task 'a' (tasks of WORK: c)",
    ),
    (
        "dependency cycle",
        lambda d: _task(d, 0, 0).update(depends_on=["b"]),
        "phases[0].tasks[0].depends_on",
        "dependency cycle: a -> b -> a",
    ),
    (
        "self dependency",
        lambda d: _task(d, 1, 0).update(depends_on=["c"]),
        "phases[1].tasks[0].depends_on",
        "dependency cycle: c -> c",
    ),
    (
        "undeclared phase in next",
        lambda d: d["phases"][1].update(next=["END", "REVIEW"]),
        "phases[1].next[1]",
        "undeclared phase 'REVIEW' (declared: START, WORK, END, CANCELLED)",
    ),
    (
        "undeclared phase in from_any_open",
        lambda d: d.update(from_any_open=["CANCELLED", "PAUSED"]),
        "from_any_open[1]",
        "undeclared phase 'PAUSED'",
    ),
    (
        "transition to itself",
        lambda d: d["phases"][1].update(next=["WORK"]),
        "phases[1].next[0]",
        "cannot transition to itself",
    ),
    (
        "terminal phase with a transition",
        lambda d: d["phases"][2].update(next=["START"]),
        "phases[2].next",
        "a terminal phase (status done) has no next",
    ),
    (
        "terminal phase with tasks",
        lambda d: d["phases"][3].update(
            tasks=[{"key": "z", "capability": "cicd", "request_type": "RUN_PIPELINE"}]
        ),
        "phases[3].tasks",
        "a terminal phase (status cancelled) has no tasks",
    ),
    (
        "unreachable phase",
        lambda d: d["phases"].insert(3, {"name": "LOST", "next": ["END"]}),
        "phases[3].name",
        "phase 'LOST' is unreachable from START",
    ),
    (
        "duplicate phase",
        lambda d: d["phases"].append({"name": "WORK", "status": "done"}),
        "phases[4].name",
        "phase 'WORK' is declared twice",
    ),
    (
        "task key used in two phases",
        lambda d: _task(d, 1, 0).update(key="a"),
        "phases[1].tasks[0].key",
        "task key 'a' is already used by phases[0].tasks[0]",
    ),
    (
        "first phase not open",
        lambda d: d["phases"][0].update(status="blocked"),
        "phases[0].status",
        "its status must be open",
    ),
    (
        "no terminal phase",
        lambda d: d.update(phases=[{"name": "ONLY"}]),
        "phases",
        "no terminal phase",
    ),
    (
        "unknown status",
        lambda d: d["phases"][2].update(status="finished"),
        "phases[2].status",
        "'open', 'blocked', 'done' or 'cancelled'",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "key", "reason"), [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES]
)
def test_a_bad_phase_file_fails_at_load_with_file_key_and_reason(
    tmp_path: Path, mutate: Mutation, key: str, reason: str
) -> None:
    data = small_phases()
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(PhaseFileError) as failed:
        load_phase_file(path)
    error = failed.value
    assert error.file == str(path)
    assert error.key == key
    assert reason in error.reason
    assert str(error).startswith(f"{path}: {key}: ")


def test_the_small_phase_file_itself_is_valid(tmp_path: Path) -> None:
    machine = load_phase_file(_write(tmp_path, small_phases()))
    assert machine.name == "bad" and machine.initial == "START"
    assert machine.allowed("WORK") == ["END", "CANCELLED"]


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("phases: []\nphases: []\n", "phases (line 2)", "duplicate key"),
        ("phases: [\n", "(line 2, column 1)", "not valid YAML"),
        ("- just\n- a list\n", "(top level)", "must be a mapping"),
        ("", "(top level)", "must be a mapping"),
    ],
)
def test_unreadable_yaml_is_named_too(tmp_path: Path, text: str, key: str, reason: str) -> None:
    with pytest.raises(PhaseFileError) as failed:
        load_phase_file(_write(tmp_path, text))
    assert (failed.value.key, reason in failed.value.reason) == (key, True)


def test_an_unknown_phase_file_name_is_an_argument_error() -> None:
    with pytest.raises(TicketArgumentError, match=r"no phase file nope\.yaml .*known: default") as failed:
        load_phase_machine("nope")
    assert failed.value.field == "phase_file"
    with pytest.raises(TicketArgumentError, match="not a phase file name"):
        load_phase_machine("../etc/passwd")


def test_the_planned_phase_file_expands_a_plan_into_tasks() -> None:
    machine = load_phase_machine("planned")
    assert machine.phase("EXECUTE").expand == "plan"
    plan = {
        "steps": [
            {"id": "api", "title": "API", "capability": "documentation", "request_type": "GENERATE_DOCS",
             "payload": {"repo": "/r", "doc_type": "api"}},
            {"id": "readme", "title": "README", "capability": "readme_update",
             "request_type": "UPDATE_README", "payload": {"repo": "/r"}, "depends_on": ["api"],
             "bindings": {"doc_type": "api.doc_type"}},
        ]
    }  # fmt: skip
    variables = template_variables(make_ticket(phase_file="planned", context={"plan": plan}))
    specs = machine.tasks_for("EXECUTE", variables)
    assert [(s.key, s.depends_on, s.bindings) for s in specs] == [
        ("api", [], {}),
        ("readme", ["api"], {"doc_type": "api.doc_type"}),
    ]
    with pytest.raises(VariableError, match=r"context\.plan: no plan in the context"):
        machine.tasks_for("EXECUTE", template_variables(make_ticket(phase_file="planned")))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda d: d["phases"][1].update(expand="nope"), "'nope' is no task of an earlier phase"),
        (
            lambda d: d["phases"][1].update(tasks=[{"key": "x", "capability": "c", "request_type": "R"}]),
            "from a plan or lists them, not both",
        ),
    ],
)
def test_a_bad_expand_fails_at_load(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], reason: str
) -> None:
    data = yaml.safe_load((PHASES_DIR / "planned.yaml").read_text())
    change(data)
    with pytest.raises(PhaseFileError) as failed:
        load_phase_file(_write(tmp_path, data))
    assert (failed.value.key, reason in failed.value.reason) == ("phases[1].expand", True), failed.value
