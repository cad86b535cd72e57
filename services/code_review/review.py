"""REVIEW_CODE: review what a change adds (two refs, or a unified diff on top of a ref)."""

from __future__ import annotations

import ast
import json
import logging
import tempfile
import time
from pathlib import Path

from langchain_core.language_models import BaseChatModel
from prometheus_client import Counter, Histogram

from services.code_review.file_checks import file_findings, missing_tests_findings
from services.code_review.lint import ruff_findings
from services.code_review.models import Finding, ReviewCodePayload, ReviewError, ReviewResult, ReviewStats
from services.code_review.secrets_scan import scan_added_lines
from services.code_review.verdict import decide, sort_findings
from shared.complexity import function_complexities
from shared.git import (
    ChangedFile,
    GitError,
    added_lines,
    changed_files,
    commit_all,
    diff_text,
    ensure_repository,
    resolve_ref,
    run_git,
    worktree,
)
from shared.llm import optional_prose

log = logging.getLogger(__name__)

REVIEW_FINDINGS = Counter(
    "devtools_review_findings_total", "Findings reported by code reviews", ["category", "severity"]
)
REVIEW_VERDICTS = Counter("devtools_review_verdicts_total", "Code review verdicts", ["verdict"])
REVIEW_DURATION = Histogram("devtools_review_duration_seconds", "Time to review one change")

PYTHON_SUFFIXES = (".py", ".pyi")
SUMMARY_INSTRUCTIONS = (
    "You are a senior code reviewer. Given a diff and the automated findings, write a short review "
    "(at most 8 sentences): what the change does, the most important problems and what to do about them. "
    "Do not repeat secret values."
)


def open_repository(repo: str) -> Path:
    try:
        return ensure_repository(repo)
    except GitError as exc:
        raise ReviewError(f"repo: not a git repository: {repo} ({exc})") from None


def resolve(repo: Path, ref: str, field: str) -> str:
    try:
        return resolve_ref(repo, ref)
    except GitError:
        raise ReviewError(f"{field}: unknown ref {ref!r} in {repo}") from None


def review_code(payload: ReviewCodePayload, *, chat_model: BaseChatModel | None = None) -> ReviewResult:
    started = time.monotonic()
    repo = open_repository(payload.repo)
    base_commit = resolve(repo, payload.base, "base")
    with tempfile.TemporaryDirectory(prefix="devtools-review-") as scratch:
        if payload.diff is not None:
            with worktree(repo, base_commit, Path(scratch)) as tree:
                head_commit = _apply_diff(tree, payload.diff)
                result = _review_tree(repo, tree, base_commit, head_commit, payload)
        else:
            head_commit = resolve(repo, payload.head or "", "head")
            with worktree(repo, head_commit, Path(scratch)) as tree:
                result = _review_tree(repo, tree, base_commit, head_commit, payload)
    if chat_model is not None:
        material = json.dumps(
            {"summary": result.summary, "findings": [f.model_dump() for f in result.findings]}, indent=1
        )
        material += "\n\nDiff:\n" + diff_text(repo, base_commit, result.head_commit)
        prose = optional_prose(chat_model, SUMMARY_INSTRUCTIONS, material)
        result.llm_summary, result.llm_warning = prose.text, prose.warning
    REVIEW_DURATION.observe(time.monotonic() - started)
    REVIEW_VERDICTS.labels(result.verdict).inc()
    for finding in result.findings:
        REVIEW_FINDINGS.labels(finding.category, finding.severity).inc()
    log.info(
        "review done",
        extra={"repo": str(repo), "head": result.head_commit, "verdict": result.verdict,
               "findings": len(result.findings)},
    )  # fmt: skip
    return result


def _apply_diff(tree: Path, diff: str) -> str:
    """Apply the diff in the throwaway tree and commit it there (a dangling commit; no ref moves)."""
    try:
        run_git(tree, "apply", "--whitespace=nowarn", "--binary", "-", input_text=diff)
    except GitError as exc:
        raise ReviewError(f"diff: does not apply on the base: {exc}") from None
    commit = commit_all(tree, "devtools review: proposed change")
    if commit is None:
        raise ReviewError("diff: changes nothing")
    return commit


def _review_tree(
    repo: Path, tree: Path, base_commit: str, head_commit: str, payload: ReviewCodePayload
) -> ReviewResult:
    added = added_lines(diff_text(repo, base_commit, head_commit))
    files = changed_files(repo, base_commit, head_commit)
    live = [f for f in files if f.status != "D" and not f.binary]
    python_files = [f.path for f in live if f.path.endswith(PYTHON_SUFFIXES)]

    findings: list[Finding] = []
    if payload.lint:
        findings += ruff_findings(tree, python_files, added, select=payload.ruff_select)
    complexity_findings, highest = _complexity_findings(
        tree, python_files, added, payload.complexity_threshold
    )
    findings += complexity_findings
    for changed in live:
        lines = added.get(changed.path)
        if lines:
            text = (tree / changed.path).read_text(encoding="utf-8", errors="replace")
            findings += scan_added_lines(changed.path, text, lines)
    findings += file_findings(str(repo), head_commit, files, payload.max_file_bytes)
    findings += missing_tests_findings(files)

    findings = sort_findings(findings)
    decision = decide(findings)
    stats = ReviewStats(
        files_changed=len(files),
        lines_added=sum(f.added for f in files),
        lines_deleted=sum(f.deleted for f in files),
        python_files_linted=len(python_files) if payload.lint else 0,
        max_complexity=highest[0] if highest else None,
        max_complexity_function=highest[1] if highest else None,
        max_complexity_at=highest[2] if highest else None,
    )
    return ReviewResult(
        repo=str(repo),
        base_commit=base_commit,
        head_commit=head_commit,
        verdict=decision.verdict,
        decided_by=decision,
        findings=findings,
        stats=stats,
        summary=_summary(files, findings, decision.reason),
    )


def _complexity_findings(
    tree: Path, files: list[str], added: dict[str, set[int]], threshold: int
) -> tuple[list[Finding], tuple[int, str, str] | None]:
    """Findings for touched functions above `threshold`, and the highest complexity among all touched
    functions (complexity, qualified name, file:line) whatever the threshold."""
    findings: list[Finding] = []
    highest: tuple[int, str, str] | None = None
    for path in files:
        lines = added.get(path, set())
        if not lines:
            continue
        try:
            module = ast.parse((tree / path).read_text(encoding="utf-8", errors="replace"))
        except SyntaxError:
            continue  # ruff reports the syntax error itself
        for function in function_complexities(module):
            touched = any(function.start_line <= n <= function.end_line for n in lines)
            if touched and (highest is None or function.complexity > highest[0]):
                highest = (function.complexity, function.qualname, f"{path}:{function.start_line}")
            if touched and function.complexity > threshold:
                findings.append(
                    Finding(
                        file=path,
                        line=function.start_line,
                        rule="complexity",
                        severity="warning",
                        category="complexity",
                        message=f"`{function.qualname}` has cyclomatic complexity {function.complexity} "
                        f"(threshold {threshold})",
                    )
                )
    return findings, highest


def _summary(files: list[ChangedFile], findings: list[Finding], reason: str) -> str:
    by_category: dict[str, int] = {}
    for finding in findings:
        by_category[finding.category] = by_category.get(finding.category, 0) + 1
    counts = ", ".join(f"{n} {category}" for category, n in sorted(by_category.items())) or "no findings"
    added = sum(f.added for f in files)
    deleted = sum(f.deleted for f in files)
    return f"{len(files)} file(s) changed (+{added} -{deleted}); {counts}. {reason}."
