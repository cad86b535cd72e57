"""Phases that apply a coordination pattern: the shipped `voted` file renders the majority vote's
tasks; a loop pattern loads and leaves its rounds to the workflow; what a phase cannot run is refused
at load with the file, the key and the reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from agent_orchestrator.tickets import PhaseFileError, load_phase_file, load_phase_machine, template_variables
from agent_orchestrator.tickets.phase_patterns import pattern_plan
from support.tests.tickets.helpers import make_ticket

pytestmark = pytest.mark.unit


def _phases(pattern: dict[str, Any]) -> dict[str, Any]:
    return {
        "phases": [
            {"name": "WORK", "pattern": pattern, "next": ["DONE"]},
            {"name": "DONE", "status": "done"},
        ]
    }


def _load(tmp_path: Path, data: dict[str, Any]) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    load_phase_file(path)


def test_the_voted_phase_file_renders_three_reviews_of_the_head_branch() -> None:
    machine = load_phase_machine("voted")
    specs = machine.tasks_for("REVIEW", template_variables(make_ticket(phase_file="voted")))
    assert [(s.key, s.request_type, s.payload["head"]) for s in specs] == [
        (f"review.{i}", "REVIEW_CODE", "feature/shout") for i in (1, 2, 3)
    ]


@pytest.mark.parametrize(
    ("pattern", "key", "reason"),
    [
        ({"name": "nope"}, "phases[0].pattern.name", "no pattern 'nope'"),
        ({"name": "review_feedback_loop"}, "phases[0].pattern.with", "needs the parameters ['instruction']"),
        ({"name": "majority_vote", "with": {"voters": 3}}, "phases[0].pattern.with", "unknown parameters"),
    ],
)
def test_what_a_phase_cannot_run_is_refused_at_load(
    tmp_path: Path, pattern: dict, key: str, reason: str
) -> None:
    with pytest.raises(PhaseFileError) as refused:
        _load(tmp_path, _phases(pattern))
    assert refused.value.key == key and reason in refused.value.reason, refused.value


def test_a_phase_applies_a_loop_pattern_whose_rounds_the_workflow_renders(tmp_path: Path) -> None:
    _load(
        tmp_path,
        _phases({"name": "review_feedback_loop", "with": {"instruction": "Add mul", "max_rounds": 2}}),
    )
    machine = load_phase_machine("p", tmp_path)
    ref = machine.phase("WORK").pattern
    assert ref is not None
    plan = pattern_plan(ref, template_variables(make_ticket()))
    assert plan.tasks == [] and [(a.kind, a.key) for a in plan.actions] == [("loop", "rounds")]


def test_a_later_phase_may_read_the_summary_of_the_earlier_ones(tmp_path: Path) -> None:
    task = {
        "key": "t",
        "capability": "c",
        "request_type": "R",
        "payload": {"brief": "{context._summary.counts}"},
    }
    later = {"phases": [
        {"name": "ONE", "next": ["TWO"], "tasks": [{"key": "s", "capability": "c", "request_type": "R"}]},
        {"name": "TWO", "next": ["DONE"], "tasks": [task]},
        {"name": "DONE", "status": "done"},
    ]}  # fmt: skip
    _load(tmp_path, later)
    first = {
        "phases": [{"name": "ONE", "next": ["DONE"], "tasks": [task]}, {"name": "DONE", "status": "done"}]
    }
    with pytest.raises(PhaseFileError) as refused:
        _load(tmp_path, first)
    assert refused.value.key == "phases[0].tasks[0].payload.brief" and "_summary" in refused.value.reason
