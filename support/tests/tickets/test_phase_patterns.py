"""Phases that apply a coordination pattern: the shipped `voted` file renders the majority vote's
tasks; what a phase cannot run is refused at load with the file, the key and the reason; the joins
and merges decide over final tasks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from agent_orchestrator.tasks import Task
from agent_orchestrator.tickets import PhaseFileError, load_phase_file, load_phase_machine, template_variables
from agent_orchestrator.tickets.phase_patterns import coordinate, pattern_plan
from support.tests.coordination.helpers import review, task
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
        ({"name": "review_feedback_loop"}, "phases[0].pattern.name", "not run by phases yet"),
        ({"name": "majority_vote", "with": {"voters": 3}}, "phases[0].pattern.with", "unknown parameters"),
    ],
)
def test_what_a_phase_cannot_run_is_refused_at_load(
    tmp_path: Path, pattern: dict, key: str, reason: str
) -> None:
    with pytest.raises(PhaseFileError) as refused:
        _load(tmp_path, _phases(pattern))
    assert refused.value.key == key and reason in refused.value.reason, refused.value


def _review(key: str, verdict: str, status: str = "succeeded") -> Task:
    return task(key, status, review(verdict) if status == "succeeded" else None)


def test_a_vote_with_one_dissent_gives_the_majority_and_a_failed_review_fails_the_join() -> None:
    plan = pattern_plan(
        load_phase_machine("voted").phase("REVIEW").pattern, template_variables(make_ticket())
    )  # type: ignore[arg-type]
    decisions, failures = coordinate(
        plan,
        [
            _review("review.1", "approve"),
            _review("review.2", "request_changes"),
            _review("review.3", "approve"),
        ],
    )
    assert failures == []
    assert decisions["verdict"]["value"] == "approve" and decisions["reviewed"]["status"] == "ready"
    _, failed = coordinate(plan, [_review("review.1", "approve"), _review("review.2", "", "failed"),
                                  _review("review.3", "approve")])  # fmt: skip
    assert failed and failed[0].startswith("reviewed:")


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
