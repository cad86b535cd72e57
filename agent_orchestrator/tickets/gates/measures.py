"""The measures a gate's `threshold` criteria compare: each reads one task's recorded result.

A measure knows which request types it reads (so a phase file that measures coverage on a review is
refused at load), what kind of value it yields (a number compares with min/max/equals, a flag or a
text only with equals) and how to say the value in words. It reads the result as the agents return
it (services/*/models.py, services/cicd/pipeline.py, services/infrastructure/contract.py); those
modules are the agents' own, so the field names are written here rather than imported.

A result that lacks what a measure needs raises `MeasureError` naming the field; a value the agent
legitimately did not measure (no coverage data) is a `Measurement` with value None: "not measured".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from agent_orchestrator.tickets.errors import TicketError

ValueType = Literal["number", "flag", "text"]
Comparison = Literal["min", "max", "equals"]

# REVIEW_CODE's default complexity_threshold (services/code_review/models.py ReviewCodePayload).
REVIEW_DEFAULT_COMPLEXITY_THRESHOLD = 10
# The rule names of services/code_review/secrets_scan.py. Its findings all carry category "secret";
# the rules are a second way to recognise one should a finding ever be filed under another category.
SECRET_RULES = frozenset(
    {
        "aws-access-key-id",
        "aws-secret-access-key",
        "github-token",
        "slack-token",
        "slack-webhook",
        "private-key",
        "hardcoded-password",
        "high-entropy-hex",
        "high-entropy-string",
    }
)
# services/code_review/review.py `_complexity_findings`: the result has no number field for complexity,
# only this message on findings of category "complexity" (functions above the review's threshold).
_COMPLEXITY_MESSAGE = re.compile(
    r"^`(?P<function>[^`]*)` has cyclomatic complexity (?P<value>\d+)(?: \(threshold (?P<threshold>\d+)\))?"
)


class MeasureError(TicketError):
    """A task's result lacks what a measure reads (or is not the kind of result it reads)."""


@dataclass(frozen=True)
class Measurement:
    """What a measure found. `value` is compared with the criterion (None: not measured); `shown` is
    recorded as the criterion's `measured`; `text` says it in words ("coverage of changed lines 61.5%").
    `at_most`: when no exact value is known but an upper bound is (no changed function above the
    review's complexity threshold means every one is at most that threshold)."""

    value: float | int | bool | str | None
    shown: Any
    text: str
    at_most: float | None = None


@dataclass(frozen=True)
class Measure:
    name: str
    description: str
    request_types: frozenset[str]
    value_type: ValueType
    read: Callable[[Mapping[str, Any], Mapping[str, Any]], Measurement]  # (result, payload)
    comparisons: frozenset[Comparison] = field(default_factory=lambda: frozenset({"min", "max", "equals"}))
    choices: tuple[str, ...] = ()  # the values a text measure can take
    unit: str = ""


def number_text(value: float | int, unit: str = "") -> str:
    """61.5 -> "61.5", 80.0 -> "80", 2/3 -> "66.67": what a person reads in a reason."""
    if isinstance(value, bool):
        return str(value).lower()
    shown = f"{value:.2f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)
    return f"{shown}{unit}"


def _field(result: Mapping[str, Any], name: str, types: type | tuple[type, ...], what: str) -> Any:
    if name not in result:
        raise MeasureError(f"the {what} result has no `{name}`")
    value = result[name]
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
        raise MeasureError(f"the {what} result's `{name}` is {value!r}, not {_type_names(types)}")
    return value


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a text", bool: "true or false", list: "a list"}


def _type_names(types: type | tuple[type, ...]) -> str:
    return " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in _as_tuple(types))


# -- RUN_PIPELINE (services/cicd/pipeline.py PipelineResult) ----------------------------------------


def _tests(result: Mapping[str, Any]) -> dict[str, Any]:
    counts = {name: _field(result, name, int, "RUN_PIPELINE") for name in ("passed", "failed", "errors")}
    return {**counts, "status": _field(result, "status", str, "RUN_PIPELINE")}


def tests_all_passed(result: Mapping[str, Any], payload: Mapping[str, Any]) -> Measurement:
    shown = _tests(result)
    ok = shown["status"] == "passed" and shown["failed"] == 0 and shown["errors"] == 0
    if ok:
        return Measurement(True, shown, f"tests: {shown['passed']} passed")
    parts = [f"{shown['failed']} failed"] + ([f"{shown['errors']} errors"] if shown["errors"] else [])
    status = f"status {shown['status']}"
    if shown["status"] != "passed" and isinstance(result.get("exit_code"), int):
        status += f", exit code {result['exit_code']}"
    return Measurement(False, shown, f"tests: {', '.join(parts)} ({status})")


def tests_failed(result: Mapping[str, Any], payload: Mapping[str, Any]) -> Measurement:
    failed = _field(result, "failed", int, "RUN_PIPELINE")
    return Measurement(failed, failed, f"{failed} tests failed")


def tests_total(result: Mapping[str, Any], payload: Mapping[str, Any]) -> Measurement:
    total = _field(result, "total", int, "RUN_PIPELINE")
    return Measurement(total, total, f"{total} tests ran")


def coverage_changed_lines(result: Mapping[str, Any], payload: Mapping[str, Any]) -> Measurement:
    # The cicd agent adds `coverage` to its result: {"changed_lines_percent": float | null,
    # "changed_lines": int, "covered_lines": int, "files": {...}}; absent or null: not measured.
    coverage = result.get("coverage")
    if coverage is None:
        return Measurement(None, None, "coverage of changed lines not measured (no coverage in the result)")
    if not isinstance(coverage, Mapping):
        raise MeasureError(f"the RUN_PIPELINE result's `coverage` is {coverage!r}, not an object")
    percent = coverage.get("changed_lines_percent")
    shown = {k: coverage.get(k) for k in ("changed_lines_percent", "changed_lines", "covered_lines")}
    if percent is None:
        lines = coverage.get("changed_lines")
        why = "no changed lines to cover" if lines == 0 else "no percentage in the result"
        return Measurement(None, shown, f"coverage of changed lines not measured ({why})")
    if isinstance(percent, bool) or not isinstance(percent, int | float):
        raise MeasureError(
            f"the RUN_PIPELINE result's `coverage.changed_lines_percent` is {percent!r}, not a number"
        )
    return Measurement(percent, shown, f"coverage of changed lines {number_text(float(percent), '%')}")


# -- REVIEW_CODE (services/code_review/models.py ReviewResult) --------------------------------------


def _findings(result: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    findings = _field(result, "findings", list, "REVIEW_CODE")
    if not all(isinstance(f, Mapping) for f in findings):
        raise MeasureError("the REVIEW_CODE result's `findings` holds something that is not an object")
    return findings


def _where(finding: Mapping[str, Any]) -> str:
    line = finding.get("line")
    return f"{finding.get('file', '?')}:{line}" if line else str(finding.get("file", "?"))


def review_verdict(result: Mapping[str, Any], payload: Mapping[str, Any]) -> Measurement:
    verdict = _field(result, "verdict", str, "REVIEW_CODE")
    decided = result.get("decided_by")
    reason = decided.get("reason") if isinstance(decided, Mapping) else None
    return Measurement(verdict, verdict, f"review verdict {verdict}" + (f" ({reason})" if reason else ""))


def review_secrets(result: Mapping[str, Any], payload: Mapping[str, Any]) -> Measurement:
    secrets = [f for f in _findings(result) if f.get("category") == "secret" or f.get("rule") in SECRET_RULES]
    # Where and which rule, never the message: it holds (a redacted piece of) the secret.
    found = [f"{f.get('rule', '?')} at {_where(f)}" for f in secrets]
    shown = {"count": len(secrets), "findings": found[:20]}
    if not secrets:
        return Measurement(0, shown, "no secrets found")
    more = f" and {len(found) - 5} more" if len(found) > 5 else ""
    return Measurement(len(secrets), shown, f"{len(secrets)} secrets found ({', '.join(found[:5])}{more})")


def review_max_complexity(result: Mapping[str, Any], payload: Mapping[str, Any]) -> Measurement:
    stats = result.get("stats") if isinstance(result.get("stats"), Mapping) else {}
    value = stats.get("max_complexity")
    if isinstance(value, int) and not isinstance(value, bool):
        # The review states the highest complexity of the changed functions itself: exact, whatever
        # its threshold.
        function, at = stats.get("max_complexity_function"), stats.get("max_complexity_at")
        threshold = payload.get("complexity_threshold", REVIEW_DEFAULT_COMPLEXITY_THRESHOLD)
        shown = {"max_complexity": value, "function": function, "at": at, "threshold": threshold}
        return Measurement(value, shown, f"complexity of `{function}` ({at}) is {value}")
    # A review from before `stats.max_complexity` reports a changed function only when its complexity
    # is above the payload's complexity_threshold; below it the result says nothing, so the highest
    # value is then only known to be at most that threshold.
    complexities: list[tuple[int, str, Mapping[str, Any]]] = []
    threshold = payload.get("complexity_threshold", REVIEW_DEFAULT_COMPLEXITY_THRESHOLD)
    for finding in _findings(result):
        if finding.get("category") != "complexity":
            continue
        match = _COMPLEXITY_MESSAGE.match(str(finding.get("message", "")))
        if match is None:
            raise MeasureError(f"the complexity finding at {_where(finding)} does not state a complexity")
        complexities.append((int(match["value"]), match["function"], finding))
        if match["threshold"]:
            threshold = int(match["threshold"])
    if not isinstance(threshold, int) or isinstance(threshold, bool):
        raise MeasureError(
            f"the REVIEW_CODE payload's `complexity_threshold` is {threshold!r}, not an integer"
        )
    if not complexities:
        shown = {"max_complexity": None, "at_most": threshold}
        text = f"no changed function above the review's complexity threshold {threshold}"
        return Measurement(None, shown, text, at_most=threshold)
    value, function, finding = max(complexities, key=lambda item: item[0])
    shown = {"max_complexity": value, "function": function, "at": _where(finding), "threshold": threshold}
    return Measurement(value, shown, f"complexity of `{function}` ({_where(finding)}) is {value}")


def review_findings(result: Mapping[str, Any], payload: Mapping[str, Any]) -> Measurement:
    findings = _findings(result)
    by_severity: dict[str, int] = {}
    for finding in findings:
        severity = str(finding.get("severity", "?"))
        by_severity[severity] = by_severity.get(severity, 0) + 1
    counts = ", ".join(f"{n} {s}" for s, n in sorted(by_severity.items()))
    return Measurement(
        len(findings),
        {"count": len(findings), **by_severity},
        f"{len(findings)} findings" + (f" ({counts})" if counts else ""),
    )


# -- DEPLOY_SERVICE / DEPLOY_ARTIFACT (DeployResult), HEALTH_CHECK / RESTART (HealthReport) ----------


def deploy_healthy(result: Mapping[str, Any], payload: Mapping[str, Any]) -> Measurement:
    status = _field(result, "status", str, "deploy")
    health = result.get("health")
    healthy = isinstance(health, Mapping) and health.get("healthy") is True
    release, environment = result.get("release_id"), result.get("environment")
    shown = {"status": status, "release_id": release, "healthy": healthy}
    if status == "deployed" and healthy:
        return Measurement(True, shown, f"release {release} deployed and healthy on {environment}")
    if status == "deployed":
        why = "no health report" if not isinstance(health, Mapping) else f"health {health.get('status')}"
        return Measurement(False, shown, f"release {release} deployed on {environment} but {why}")
    why = result.get("failure_reason") or result.get("message") or ""
    return Measurement(False, shown, f"deploy of release {release} {status}" + (f": {why}" if why else ""))


def health_healthy(result: Mapping[str, Any], payload: Mapping[str, Any]) -> Measurement:
    healthy = _field(result, "healthy", bool, "health")
    status, environment = result.get("status"), result.get("environment")
    shown = {"healthy": healthy, "status": status, "release_id": result.get("release_id")}
    reason = result.get("reason")
    return Measurement(
        healthy, shown, f"{environment} is {status}" + (f" ({reason})" if reason and not healthy else "")
    )


# -- VALIDATE_BUILD (services/cicd/build.py BuildResult) -------------------------------------------


def build_succeeded(result: Mapping[str, Any], payload: Mapping[str, Any]) -> Measurement:
    status = _field(result, "status", str, "VALIDATE_BUILD")
    artifacts = result.get("artifacts")
    count = len(artifacts) if isinstance(artifacts, list) else 0
    shown = {"status": status, "artifacts": count}
    if status == "succeeded":
        return Measurement(True, shown, f"build succeeded ({count} artifacts)")
    return Measurement(
        False, shown, f"build {status}" + (f": {result['message']}" if result.get("message") else "")
    )


_FLAG: frozenset[Comparison] = frozenset({"equals"})
_PIPELINE = frozenset({"RUN_PIPELINE"})
_REVIEW = frozenset({"REVIEW_CODE"})

MEASURES: dict[str, Measure] = {
    m.name: m
    for m in (
        Measure(
            "tests.all_passed",
            "status passed, no failed tests, no errors",
            _PIPELINE,
            "flag",
            tests_all_passed,
            _FLAG,
        ),
        Measure("tests.failed", "the number of failed tests", _PIPELINE, "number", tests_failed),
        Measure("tests.total", "the number of tests that ran", _PIPELINE, "number", tests_total),
        Measure(
            "coverage.changed_lines_percent",
            "line coverage of the changed lines, in percent",
            _PIPELINE,
            "number",
            coverage_changed_lines,
            unit="%",
        ),
        Measure(
            "review.verdict",
            "the review's verdict",
            _REVIEW,
            "text",
            review_verdict,
            _FLAG,
            choices=("approve", "comment", "request_changes"),
        ),
        Measure("review.secrets", "findings that are secrets", _REVIEW, "number", review_secrets),
        Measure(
            "review.max_complexity",
            "the highest cyclomatic complexity of a changed function",
            _REVIEW,
            "number",
            review_max_complexity,
            frozenset(
                {"max"}
            ),  # only an upper bound is provable: the review reports only functions above its threshold
        ),
        Measure("review.findings", "all findings of the review", _REVIEW, "number", review_findings),
        Measure(
            "deploy.healthy",
            "the release was deployed and passed its health check",
            frozenset({"DEPLOY_SERVICE", "DEPLOY_ARTIFACT"}),
            "flag",
            deploy_healthy,
            _FLAG,
        ),
        Measure(
            "health.healthy",
            "the environment answers its health check",
            frozenset({"HEALTH_CHECK", "RESTART"}),
            "flag",
            health_healthy,
            _FLAG,
        ),
        Measure(
            "build.succeeded",
            "the build succeeded",
            frozenset({"VALIDATE_BUILD"}),
            "flag",
            build_succeeded,
            _FLAG,
        ),
    )
}


def get_measure(name: str) -> Measure:
    """The measure of that name; KeyError listing the known ones."""
    try:
        return MEASURES[name]
    except KeyError:
        raise KeyError(f"unknown measure {name!r} (known: {', '.join(sorted(MEASURES))})") from None


def measure(name: str, result: Any, payload: Mapping[str, Any] | None = None) -> Measurement:
    """Measure a task's result (and, for measures that need it, its payload); MeasureError when the
    result is not what the measure reads."""
    found = get_measure(name)
    if not isinstance(result, Mapping):
        raise MeasureError(f"{name} reads a result object; the task's result is {type(result).__name__}")
    return found.read(result, payload or {})
