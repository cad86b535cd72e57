"""RUN_PIPELINE: the repository's own tests, at a ref, in a throwaway worktree under the data dir."""

from __future__ import annotations

import json
import logging
import shlex
import uuid
from pathlib import Path
from typing import Literal

from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, ConfigDict, Field

from services.cicd.changed_coverage import ChangedLinesCoverage, CoverageReport
from services.cicd.errors import CicdError, NoTestCommandError, TestsFailedError
from services.cicd.metrics import PIPELINE_DURATION, PIPELINE_RUNS
from services.cicd.test_results import TestCounts, counts_from_junit, counts_from_summary
from shared.diagnosis import diagnose
from shared.git import GitError, ensure_repository, resolve_ref, worktree
from shared.llm import Prose
from shared.process import clean_environment, interpreter_for, log_tail, run_command
from shared.project import ProjectConfig, is_python_project, load_project_config

log = logging.getLogger(__name__)

# A ref never starts with "-" (it would read as a git option) and holds no whitespace.
REF_PATTERN = r"^[^-\s][^\s]*$"


class RunPipelinePayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    repo: str = Field(min_length=1, description="path of the git repository")
    ref: str = Field("HEAD", min_length=1, max_length=255, pattern=REF_PATTERN)
    test_command: str | None = Field(None, min_length=1, description="overrides the configured/detected one")
    timeout_seconds: float | None = Field(None, gt=0, le=6 * 3600)
    coverage_base: str | None = Field(
        None,
        min_length=1,
        max_length=255,
        pattern=REF_PATTERN,
        description="measure line coverage of what base...ref changes (Python repositories, coverage.py)",
    )
    require_pass: bool = Field(
        False,
        description="answer failing tests as an error (permanent, code tests_failed) instead of a result, "
        "so that tasks depending on this run do not start",
    )


class PipelineResult(BaseModel):
    run_id: str
    status: Literal["passed", "failed", "timed_out"]
    repo: str
    ref: str
    commit: str
    command: str
    command_source: str  # payload | devtools.toml | pyproject.toml | detected:pytest | detected:npm | ...
    exit_code: int | None
    timed_out: bool
    passed: int
    failed: int
    skipped: int
    errors: int
    total: int
    failed_tests: list[str] = Field(default_factory=list)  # from the JUnit report; at most 50
    counts_source: Literal["junit", "summary", "none"]
    duration_seconds: float
    log_tail: str
    log_path: str
    diagnosis: str | None = None  # LLM prose, only when a model is configured and the run failed
    llm_warning: str | None = None  # why `diagnosis` is missing although a model is configured
    coverage: CoverageReport | None = None  # only when the payload names a coverage_base


def _makefile_has_test(root: Path) -> bool:
    for name in ("Makefile", "makefile", "GNUmakefile"):
        path = root / name
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            if any(line.startswith("test:") or line.startswith("test ") for line in text.splitlines()):
                return True
    return False


def _package_json_has_test(root: Path) -> bool:
    path = root / "package.json"
    if not path.is_file():
        return False
    try:
        scripts = json.loads(path.read_text(encoding="utf-8")).get("scripts", {})
    except (json.JSONDecodeError, AttributeError):
        return False
    return isinstance(scripts, dict) and bool(scripts.get("test"))


def resolve_test_command(
    root: Path, config: ProjectConfig, junit_path: Path, override: str | None = None, repo: Path | None = None
) -> tuple[str, str]:
    """(command, where it came from). Detection order: pytest for Python repos, npm test, make test."""
    if override:
        return override, "payload"
    if config.test_command:
        return config.test_command, config.source
    if is_python_project(root):
        python = shlex.quote(interpreter_for(root, repo))
        return f"{python} -m pytest -p no:cacheprovider --junitxml={shlex.quote(str(junit_path))}", (
            "detected:pytest"
        )
    if _package_json_has_test(root):
        return "npm test", "detected:npm"
    if _makefile_has_test(root):
        return "make test", "detected:make"
    raise NoTestCommandError(
        "no test command: set test_command under [tool.devtools] in pyproject.toml or in devtools.toml "
        "(nothing detected: no Python project, no package.json test script, no Makefile test target)"
    )


def _counts(root: Path, config: ProjectConfig, junit_path: Path, log_text: str) -> TestCounts:
    candidates = [junit_path]
    if config.junit_xml:
        candidates.insert(0, root / config.junit_xml)
    for candidate in candidates:
        counts = counts_from_junit(candidate)
        if counts is not None:
            return counts
    return counts_from_summary(log_text) or TestCounts()


def run_pipeline(
    payload: RunPipelinePayload, *, data_dir: Path, chat_model: BaseChatModel | None = None
) -> PipelineResult:
    try:
        repo = ensure_repository(payload.repo)
        commit = resolve_ref(repo, payload.ref)
    except GitError as exc:
        raise CicdError(str(exc)) from None
    base_commit = None
    if payload.coverage_base is not None:
        try:
            base_commit = resolve_ref(repo, payload.coverage_base)
        except GitError as exc:
            raise CicdError(f"coverage_base: {exc}") from None
    run_id = uuid.uuid4().hex[:12]
    run_dir = data_dir / "pipelines" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    junit_path = run_dir / "junit.xml"
    log_path = run_dir / "log.txt"
    with worktree(repo, commit, data_dir / "worktrees" / "cicd") as root:
        config = load_project_config(root)
        command, source = resolve_test_command(root, config, junit_path, payload.test_command, repo)
        timeout = payload.timeout_seconds or config.timeout_seconds
        # Configured commands that call pytest still leave a JUnit report for exact counts.
        extra = {} if source == "detected:pytest" else {"PYTEST_ADDOPTS": f"--junitxml={junit_path}"}
        env = clean_environment(root, extra, repo=repo)
        measurement = None
        if payload.coverage_base is not None and base_commit is not None:
            measurement = ChangedLinesCoverage(
                base=payload.coverage_base,
                base_commit=base_commit,
                root=root,
                repo=repo,
                folder=run_dir / "coverage",
                python=interpreter_for(root, repo),
            )
            command, env = measurement.prepare(command, env)
        log.info("pipeline started", extra={"run_id": run_id, "commit": commit, "command": command})
        outcome = run_command(command, cwd=root, log_path=log_path, timeout=timeout, env=env)
        tail = log_tail(log_path)
        counts = _counts(root, config, junit_path, tail)
        # Still inside the worktree block: coverage parses the measured files for their executable lines.
        coverage = measurement.report(commit, timed_out=outcome.timed_out) if measurement else None
    status: Literal["passed", "failed", "timed_out"] = (
        "timed_out" if outcome.timed_out else "passed" if outcome.exit_code == 0 else "failed"
    )
    PIPELINE_RUNS.labels(status=status).inc()
    PIPELINE_DURATION.observe(outcome.duration_seconds)
    log.info("pipeline finished", extra={"run_id": run_id, "status": status, "exit_code": outcome.exit_code})
    diagnosis = Prose()
    if status != "passed":
        diagnosis = diagnose(chat_model, f"Test command `{command}` {status} at commit {commit[:12]}.", tail)
    result = PipelineResult(
        run_id=run_id,
        status=status,
        repo=str(repo),
        ref=payload.ref,
        commit=commit,
        command=command,
        command_source=source,
        exit_code=outcome.exit_code,
        timed_out=outcome.timed_out,
        passed=counts.passed,
        failed=counts.failed,
        skipped=counts.skipped,
        errors=counts.errors,
        total=counts.total,
        failed_tests=list(counts.failed_tests),
        counts_source=counts.source,
        duration_seconds=round(outcome.duration_seconds, 3),
        log_tail=tail,
        log_path=str(log_path),
        diagnosis=diagnosis.text,
        llm_warning=diagnosis.warning,
        coverage=coverage,
    )
    if payload.require_pass and status != "passed":
        named = f": {', '.join(result.failed_tests)}" if result.failed_tests else ""
        raise TestsFailedError(
            f"tests {status} at {commit[:12]}: {result.failed} failed, {result.errors} errors{named} "
            f"(log: {log_path})"
        )
    return result
