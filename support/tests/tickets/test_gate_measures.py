"""Every gate measure on results shaped by the agents' own result models: the value, what is recorded
as measured, the words, and a clear MeasureError when the result lacks what the measure reads."""

from __future__ import annotations

import pytest

from agent_orchestrator.tickets.gates import MEASURES, MeasureError, get_measure, measure
from support.tests.tickets import gate_results as results
from support.tests.tickets.gate_results import finding

pytestmark = pytest.mark.unit


def test_the_registry_names_each_measure_and_what_it_reads() -> None:
    assert set(MEASURES) == {
        "tests.all_passed",
        "tests.failed",
        "tests.total",
        "coverage.changed_lines_percent",
        "review.verdict",
        "review.secrets",
        "review.max_complexity",
        "review.findings",
        "deploy.healthy",
        "health.healthy",
        "build.succeeded",
    }
    assert get_measure("coverage.changed_lines_percent").request_types == {"RUN_PIPELINE"}
    assert get_measure("review.max_complexity").comparisons == {"max"}
    with pytest.raises(KeyError, match=r"unknown measure 'tests\.coverage' \(known: build\.succeeded"):
        get_measure("tests.coverage")


def test_tests_all_passed_on_a_green_and_a_red_pipeline() -> None:
    green = measure("tests.all_passed", results.pipeline(passed=12))
    assert (green.value, green.text) == (True, "tests: 12 passed")
    assert green.shown == {"passed": 12, "failed": 0, "errors": 0, "status": "passed"}

    red = measure("tests.all_passed", results.pipeline(status="failed", passed=10, failed=2))
    assert red.value is False
    assert red.text == "tests: 2 failed (status failed, exit code 1)"
    assert red.shown == {"passed": 10, "failed": 2, "errors": 0, "status": "failed"}

    errors = measure("tests.all_passed", results.pipeline(status="failed", failed=0, errors=3))
    assert errors.text == "tests: 0 failed, 3 errors (status failed, exit code 1)"
    # A passed status with a failure counted (a runner that ignores failures) is still not all passed.
    assert measure("tests.all_passed", results.pipeline(status="passed", failed=1)).value is False


def test_tests_counts() -> None:
    assert measure("tests.failed", results.pipeline(status="failed", failed=4)).value == 4
    total = measure("tests.total", results.pipeline(passed=7, failed=1, status="failed"))
    assert (total.value, total.text) == (9, "9 tests ran")  # 7 + 1 + 1 skipped


def test_coverage_of_changed_lines() -> None:
    coverage = {
        "changed_lines_percent": 61.5,
        "changed_lines": 26,
        "covered_lines": 16,
        "files": {"app.py": {"changed_lines": 26, "covered_lines": 16}},
    }
    found = measure("coverage.changed_lines_percent", results.pipeline(coverage=coverage))
    assert (found.value, found.text) == (61.5, "coverage of changed lines 61.5%")
    assert found.shown == {"changed_lines_percent": 61.5, "changed_lines": 26, "covered_lines": 16}

    missing = measure("coverage.changed_lines_percent", results.pipeline())
    assert missing.value is None and "not measured" in missing.text and missing.shown is None
    null = {"changed_lines_percent": None, "changed_lines": 0, "covered_lines": 0, "files": {}}
    nothing = measure("coverage.changed_lines_percent", results.pipeline(coverage=null))
    assert nothing.value is None
    assert nothing.text == "coverage of changed lines not measured (no changed lines to cover)"

    with pytest.raises(MeasureError, match=r"`coverage\.changed_lines_percent` is 'high', not a number"):
        measure(
            "coverage.changed_lines_percent", results.pipeline(coverage={"changed_lines_percent": "high"})
        )


def test_review_verdict_says_why() -> None:
    approve = measure("review.verdict", results.review("approve"))
    assert (approve.value, approve.text) == (
        "approve",
        "review verdict approve (no findings on the changed lines)",
    )
    comment = measure("review.verdict", results.review("comment", reason="1 warning(s): app.py:3 complexity"))
    assert comment.text == "review verdict comment (1 warning(s): app.py:3 complexity)"


def test_review_secrets_counts_secret_findings_by_category_and_rule_without_their_values() -> None:
    findings = [
        finding("secret", "github-token", "error", "GitHub token: ghp_…(40 chars)", file="cfg.py", line=2),
        finding(
            "secret", "high-entropy-string", "warning", "possible secret (entropy 4.80 bits/char): abcd…"
        ),
        finding("lint", "E501"),
        finding("tests", "missing-tests", file="app.py", line=None),
    ]
    found = measure("review.secrets", results.review("request_changes", findings))
    assert found.value == 2
    assert found.shown == {
        "count": 2,
        "findings": ["github-token at cfg.py:2", "high-entropy-string at app.py:3"],
    }
    assert found.text == "2 secrets found (github-token at cfg.py:2, high-entropy-string at app.py:3)"
    assert "ghp_" not in found.text and "ghp_" not in str(found.shown)
    none = measure("review.secrets", results.review())
    assert (none.value, none.text) == (0, "no secrets found")


def test_review_max_complexity_from_the_complexity_findings() -> None:
    findings = [
        finding(
            "complexity", "complexity", message="`route` has cyclomatic complexity 14 (threshold 5)", line=40
        ),
        finding("complexity", "complexity", message="`Cart.total` has cyclomatic complexity 7 (threshold 5)"),
        finding("lint", "C901", message="`x` has cyclomatic complexity 99"),  # lint, not the review's measure
    ]
    found = measure("review.max_complexity", results.review("comment", findings), {"complexity_threshold": 5})
    assert found.value == 14
    assert found.shown == {"max_complexity": 14, "function": "route", "at": "app.py:40", "threshold": 5}
    assert found.text == "complexity of `route` (app.py:40) is 14"


def test_review_max_complexity_without_findings_is_bounded_by_the_reviews_threshold() -> None:
    found = measure("review.max_complexity", results.review(), {"complexity_threshold": 5})
    assert (found.value, found.at_most) == (None, 5)
    assert found.text == "no changed function above the review's complexity threshold 5"
    # The agent's default threshold when the payload names none.
    assert measure("review.max_complexity", results.review(), {}).at_most == 10


def test_review_findings_counts_by_severity() -> None:
    found = measure(
        "review.findings",
        results.review("comment", [finding("lint", "E501"), finding("lint", "F401", "error")]),
    )
    assert (found.value, found.shown) == (2, {"count": 2, "error": 1, "warning": 1})
    assert found.text == "2 findings (1 error, 1 warning)"


def test_deploy_healthy() -> None:
    live = measure("deploy.healthy", results.deploy())
    assert (live.value, live.text) == (True, "release r-20250101-0002 deployed and healthy on staging")
    rolled = measure("deploy.healthy", results.deploy("rolled_back", healthy=True))
    assert rolled.value is False
    assert rolled.text == "deploy of release r-20250101-0002 rolled_back: no answer on /health within 10s"
    sick = measure("deploy.healthy", results.deploy("deployed", healthy=False))
    assert (sick.value, sick.text) == (False, "release r-20250101-0002 deployed on staging but health down")
    assert sick.shown == {"status": "deployed", "release_id": "r-20250101-0002", "healthy": False}


def test_health_and_build() -> None:
    up = measure("health.healthy", results.health_check())
    assert (up.value, up.text) == (True, "staging is up")
    down = measure("health.healthy", results.health_check(healthy=False))
    assert (down.value, down.text) == (False, "staging is down (the process exited (code 1))")
    assert measure("build.succeeded", results.build()).text == "build succeeded (0 artifacts)"
    failed = measure("build.succeeded", results.build("failed"))
    assert (failed.value, failed.text) == (False, "build failed: the build command exited with 1")


@pytest.mark.parametrize(
    ("name", "result", "message"),
    [
        (
            "tests.all_passed",
            {"status": "passed", "passed": 3, "failed": 0},
            r"RUN_PIPELINE result has no `errors`",
        ),
        ("tests.failed", {"failed": "2"}, r"`failed` is '2', not an integer"),
        ("tests.failed", {"failed": True}, r"`failed` is True, not an integer"),
        ("review.verdict", {"findings": []}, r"REVIEW_CODE result has no `verdict`"),
        ("review.secrets", {"verdict": "approve"}, r"REVIEW_CODE result has no `findings`"),
        ("review.secrets", {"findings": ["x"]}, r"`findings` holds something that is not an object"),
        (
            "review.max_complexity",
            {"findings": [{"category": "complexity", "file": "a.py", "line": 2, "message": "too complex"}]},
            r"complexity finding at a\.py:2 does not state a complexity",
        ),
        ("deploy.healthy", {"release_id": "r1"}, r"deploy result has no `status`"),
        ("health.healthy", {"status": "up"}, r"health result has no `healthy`"),
        ("build.succeeded", {}, r"VALIDATE_BUILD result has no `status`"),
        ("tests.all_passed", ["not", "an", "object"], r"reads a result object; the task's result is list"),
    ],
)
def test_a_result_that_lacks_what_a_measure_reads_is_named(name: str, result: object, message: str) -> None:
    with pytest.raises(MeasureError, match=message):
        measure(name, result)
