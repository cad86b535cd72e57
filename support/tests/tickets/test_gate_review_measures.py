"""The review measures on what the real code-review agent returns for a real change: the complexity
it states only in its findings' messages, and its secret findings."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_orchestrator.tickets.gates import Gate, evaluate, measure
from services.code_review.models import ReviewCodePayload
from services.code_review.review import review_code
from support.tests.gitrepo import GitRepo
from support.tests.tickets.gate_results import task

pytestmark = pytest.mark.integration

SIMPLE = "def add(a: int, b: int) -> int:\n    return a + b\n"
# Cyclomatic complexity 8: seven branches and the function itself.
BRANCHY = """

def grade(score: int) -> str:
    if score > 90:
        return "A"
    if score > 80:
        return "B"
    if score > 70:
        return "C"
    if score > 60:
        return "D"
    if score > 50:
        return "E"
    if score < 0:
        raise ValueError(score)
    if score == 0:
        return "zero"
    return "F"
"""
GITHUB_TOKEN = "ghp_" + "Q3x9" * 9  # split so this file holds no token-shaped literal


def _review(tmp_path: Path, change: dict[str, str], **fields: object) -> dict:
    repo = GitRepo(tmp_path / "repo")
    repo.commit("initial", {"app.py": SIMPLE})
    repo.branch("feature")
    repo.commit("change", change)
    payload = ReviewCodePayload(repo=str(repo.path), base="main", head="feature", lint=False, **fields)
    return review_code(payload).model_dump(mode="json")


def test_max_complexity_is_read_from_the_reviews_complexity_findings(tmp_path: Path) -> None:
    payload = {"complexity_threshold": 5}
    result = _review(tmp_path, {"app.py": SIMPLE + BRANCHY}, **payload)
    found = measure("review.max_complexity", result, payload)
    assert found.value == 8
    assert found.shown == {"max_complexity": 8, "function": "grade", "at": "app.py:5", "threshold": 5}

    gate = Gate.model_validate(
        {
            "criteria": [
                {"kind": "threshold", "task": "complexity", "measure": "review.max_complexity", "max": 6}
            ]
        }
    )
    outcome = evaluate(gate, [task("complexity", "REVIEW_CODE", result, payload=payload)], [])
    assert outcome.verdict == "failed"
    assert outcome.reasons == ["complexity of `grade` (app.py:5) is 8 > 6"]


def test_a_change_below_the_threshold_is_measured_exactly_too(tmp_path: Path) -> None:
    payload = {"complexity_threshold": 10}
    result = _review(tmp_path, {"app.py": SIMPLE + BRANCHY}, **payload)
    assert not [f for f in result["findings"] if f["category"] == "complexity"]  # 8 is below 10
    found = measure("review.max_complexity", result, payload)
    assert (found.value, found.shown["function"], found.shown["at"]) == (8, "grade", "app.py:5")


def test_secrets_count_what_the_secret_scan_found(tmp_path: Path) -> None:
    result = _review(tmp_path, {"settings.py": f'TOKEN = "{GITHUB_TOKEN}"\n'})
    assert result["verdict"] == "request_changes"
    found = measure("review.secrets", result)
    assert found.value >= 1
    assert "github-token at settings.py:1" in found.shown["findings"]
    assert GITHUB_TOKEN not in found.text
