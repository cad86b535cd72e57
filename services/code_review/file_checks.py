"""Whole-file findings: binary or large files, and source changed without any test changed."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from services.code_review.models import Finding
from shared.git import ChangedFile, GitError, run_git

SOURCE_SUFFIXES = {
    ".py",
    ".js",
    ".jsx",
    ".ts",
    ".tsx",
    ".go",
    ".rs",
    ".java",
    ".kt",
    ".rb",
    ".c",
    ".cc",
    ".cpp",
}
_TEST_DIRS = {"test", "tests", "__tests__", "testing", "spec"}
_TEST_NAME = re.compile(
    r"^(?:test_.*|.*_test\.\w+|.*\.(?:test|spec)\.\w+|.*Tests?\.(?:java|kt)|conftest\.py)$"
)


def is_test_file(path: str) -> bool:
    parts = PurePosixPath(path).parts
    return bool(_TEST_DIRS.intersection(parts[:-1])) or bool(_TEST_NAME.match(parts[-1]))


def is_source_file(path: str) -> bool:
    return PurePosixPath(path).suffix in SOURCE_SUFFIXES and not is_test_file(path)


def blob_size(repo: str, commit: str, path: str) -> int | None:
    try:
        return int(run_git(repo, "cat-file", "-s", f"{commit}:{path}").strip())
    except (GitError, ValueError):
        return None


def file_findings(repo: str, head_commit: str, files: list[ChangedFile], max_bytes: int) -> list[Finding]:
    findings: list[Finding] = []
    for changed in files:
        if changed.status == "D":
            continue
        if changed.binary:
            findings.append(
                Finding(
                    file=changed.path,
                    rule="binary-file",
                    severity="warning",
                    category="file",
                    message="binary file added or changed; consider Git LFS or an artifact store",
                )
            )
        size = blob_size(repo, head_commit, changed.path)
        if size is not None and size > max_bytes:
            findings.append(
                Finding(
                    file=changed.path,
                    rule="large-file",
                    severity="warning",
                    category="file",
                    message=f"file is {size} bytes, over the {max_bytes}-byte limit",
                )
            )
    return findings


def missing_tests_findings(files: list[ChangedFile]) -> list[Finding]:
    """One finding per changed source file when the change touches no test file at all."""
    live = [f for f in files if f.status != "D"]
    if any(is_test_file(f.path) for f in files):
        return []
    return [
        Finding(
            file=f.path,
            rule="missing-tests",
            severity="warning",
            category="tests",
            message="source changed but no test file was added or changed",
        )
        for f in live
        if is_source_file(f.path) and not f.binary
    ]
