"""Task results as the agents return them, built with the agents' own result models (so a renamed
field fails here, not in production), and tasks that carry them, for the gate tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from agent_orchestrator.tasks import Task
from services.cicd.build import BuildResult
from services.cicd.pipeline import PipelineResult
from services.code_review.models import Finding, ReviewResult, ReviewStats, VerdictDecision
from services.documentation.models import GenerateDocsResult, UpdateReadmeResult
from services.feature_dev.models import ChangeResult
from services.infrastructure.contract import DeployResult, HealthReport
from services.orchestrator_agent.models import DecomposeResult, PlanStep

COMMIT = "a" * 40
BASE = "b" * 40


def pipeline(
    *, status: str = "passed", passed: int = 12, failed: int = 0, errors: int = 0, **extra: Any
) -> dict[str, Any]:
    """A RUN_PIPELINE result; `coverage=...` adds the object the cicd agent is to return."""
    coverage = extra.pop("coverage", None)
    result = PipelineResult(
        run_id="3f2a9c1b7d4e",
        status=status,  # type: ignore[arg-type]
        repo="/srv/repos/greeter",
        ref=COMMIT,
        commit=COMMIT,
        command="python -m pytest -p no:cacheprovider --junitxml=/data/pipelines/3f2a9c1b7d4e/junit.xml",
        command_source="detected:pytest",
        exit_code=0 if status == "passed" else 1,
        timed_out=status == "timed_out",
        passed=passed,
        failed=failed,
        skipped=1,
        errors=errors,
        total=passed + failed + errors + 1,
        counts_source="junit",
        duration_seconds=1.234,
        log_tail="== 12 passed, 1 skipped in 1.20s ==",
        log_path="/data/pipelines/3f2a9c1b7d4e/log.txt",
        **extra,
    ).model_dump(mode="json")
    if coverage is not None:
        result["coverage"] = coverage
    return result


def finding(category: str, rule: str, severity: str = "warning", message: str = "", **fields: Any) -> Finding:
    return Finding(
        file=fields.get("file", "app.py"),
        line=fields.get("line", 3),
        rule=rule,
        severity=severity,  # type: ignore[arg-type]
        category=category,  # type: ignore[arg-type]
        message=message or f"{rule} here",
    )


def review(
    verdict: str = "approve", findings: list[Finding] | None = None, reason: str = ""
) -> dict[str, Any]:
    rule = {"approve": "no-findings", "comment": "warnings-only", "request_changes": "blocking-findings"}
    return ReviewResult(
        repo="/srv/repos/greeter",
        base_commit=BASE,
        head_commit=COMMIT,
        verdict=verdict,  # type: ignore[arg-type]
        decided_by=VerdictDecision(
            verdict=verdict,  # type: ignore[arg-type]
            rule=rule[verdict],
            reason=reason or "no findings on the changed lines",
        ),
        findings=findings or [],
        stats=ReviewStats(files_changed=2, lines_added=14, lines_deleted=1, python_files_linted=2),
        summary="2 file(s) changed (+14 -1); no findings. no findings on the changed lines.",
    ).model_dump(mode="json")


def health(*, healthy: bool = True, environment: str = "staging") -> HealthReport:
    return HealthReport(
        environment=environment,
        status="up" if healthy else "down",
        healthy=healthy,
        release_id="r-20250101-0001",
        url="http://127.0.0.1:18080/health",
        http_status=200 if healthy else None,
        http_error=None if healthy else "connection refused",
        process_alive=healthy,
        pid=4242 if healthy else None,
        port=18080,
        error_lines=[] if healthy else ["Traceback (most recent call last):"],
        reason=None if healthy else "the process exited (code 1)",
        checked_at="2025-01-01T00:00:00+00:00",
    )


def deploy(status: str = "deployed", *, healthy: bool = True) -> dict[str, Any]:
    return DeployResult(
        environment="staging",
        status=status,  # type: ignore[arg-type]
        release_id="r-20250101-0002",
        active_release="r-20250101-0002" if status == "deployed" else "r-20250101-0001",
        previous_release="r-20250101-0001",
        message="release r-20250101-0002 is live on port 18080"
        if status == "deployed"
        else "release r-20250101-0002 failed its health check; restored r-20250101-0001",
        failure_reason=None if status == "deployed" else "no answer on /health within 10s",
        health=health(healthy=healthy),
        duration_seconds=2.5,
    ).model_dump(mode="json")


def health_check(*, healthy: bool = True) -> dict[str, Any]:
    return health(healthy=healthy).model_dump(mode="json")


def build(status: str = "succeeded") -> dict[str, Any]:
    return BuildResult(
        build_id="b7c1d2e3f4a5",
        status=status,  # type: ignore[arg-type]
        message="built 1 artifact" if status == "succeeded" else "the build command exited with 1",
        repo="/srv/repos/greeter",
        ref=COMMIT,
        commit=COMMIT,
        command="python -m build --no-isolation --outdir dist",
        command_source="default:python-build",
        exit_code=0 if status == "succeeded" else 1,
        duration_seconds=3.1,
        artifacts=[],
        log_tail="Successfully built greeter-0.1.0.tar.gz",
        log_path="/data/builds/b7c1d2e3f4a5/log.txt",
    ).model_dump(mode="json")


def docs(markdown: str = "# greeter\n") -> dict[str, Any]:
    return GenerateDocsResult(
        repo="/srv/repos/greeter",
        doc_type="api",
        ref=COMMIT,
        commit=COMMIT,
        markdown=markdown,
        sources=["greeter/__init__.py"],
    ).model_dump(mode="json")


def readme() -> dict[str, Any]:
    return UpdateReadmeResult(
        repo="/srv/repos/greeter",
        readme="README.md",
        section="api",
        mode="in_place",
        changed=True,
        section_text="## API\n",
    ).model_dump(mode="json")


def change(outcome: str = "committed") -> dict[str, Any]:
    committed = outcome == "committed"
    return ChangeResult(
        kind="generate",
        outcome=outcome,  # type: ignore[arg-type]
        repo="/srv/repos/greeter",
        base_ref="main",
        base_commit=BASE,
        branch="devtools/generate-shout" if committed else None,
        commit=COMMIT if committed else None,
        files_changed=1 if committed else 0,
        model="scripted",
    ).model_dump(mode="json")


def plan() -> dict[str, Any]:
    step = PlanStep(
        id="docs", title="Regenerate the docs", capability="documentation", request_type="GENERATE_DOCS"
    )
    return DecomposeResult(
        kind="docs", source="rules", steps=[step], order=["docs"], stages=[["docs"]]
    ).model_dump(mode="json")


REQUEST_TYPES = {
    "RUN_PIPELINE": "cicd",
    "VALIDATE_BUILD": "cicd",
    "DEPLOY_ARTIFACT": "cicd",
    "REVIEW_CODE": "code_review",
    "DEPLOY_SERVICE": "infrastructure",
    "HEALTH_CHECK": "infrastructure",
    "GENERATE_DOCS": "documentation",
    "UPDATE_README": "documentation",
    "GENERATE_CODE": "feature_dev",
    "REFACTOR_CODE": "feature_dev",
    "DECOMPOSE_TASK": "orchestration",
}


def task(
    key: str,
    request_type: str,
    result: Any = None,
    *,
    status: str = "succeeded",
    payload: dict[str, Any] | None = None,
    error: str | None = None,
    phase: str = "INTEGRATION",
    attempt: int = 1,
    ticket_id: UUID | None = None,
) -> Task:
    """A task row as the store returns it, without a database."""
    now = datetime.now(UTC)
    return Task.model_validate(
        {
            "id": uuid4(),
            "ticket_id": ticket_id or uuid4(),
            "phase": phase,
            "key": key,
            "title": key,
            "capability": REQUEST_TYPES.get(request_type, "cicd"),
            "request_type": request_type,
            "payload": payload or {},
            "priority": 0,
            "depends_on": [],
            "locks": [],
            "status": status,
            "attempt": attempt,
            "failures": 0 if status == "succeeded" else 1,
            "max_attempts": 3,
            "timeout_seconds": 600.0,
            "not_before": now,
            "claimed_by": "dispatcher-1",
            "assigned_agent": f"{REQUEST_TYPES.get(request_type, 'cicd')}-1",
            "lease_expires_at": None,
            "deadline_at": None,
            "cancel_requested": False,
            "result": result,
            "error": error,
            "error_class": None if error is None else "permanent",
            "error_kind": None,
            "blocked_reason": None,
            "wait_reason": None,
            "created_at": now,
            "updated_at": now,
            "started_at": now,
            "finished_at": now,
        }
    )
