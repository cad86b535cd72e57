"""Ruff findings on the lines a change adds, run on the head version of the changed files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from services.code_review.models import Finding, ReviewError, Severity

RUFF_TIMEOUT_SECONDS = 120
# Rules that point at code that is wrong, not merely untidy: pyflakes (undefined names,
# bad comparisons, broken format strings...) and syntax errors. Unused imports and
# variables are pyflakes too, but they do not break anything: warnings.
_ERROR_PREFIXES = ("F", "E9", "PLE")
_WARNING_CODES = {"F401", "F841", "F811", "F403", "F405"}


def lint_severity(code: str | None) -> Severity:
    if code is None:  # ruff reports syntax errors without a rule code
        return "error"
    if code in _WARNING_CODES:
        return "warning"
    return "error" if code.startswith(_ERROR_PREFIXES) else "warning"


def ruff_findings(
    tree: Path, files: list[str], added: dict[str, set[int]], *, select: list[str] | None = None
) -> list[Finding]:
    """Ruff on `files` (relative to `tree`), keeping only findings on added lines.

    Ruff runs inside the checked-out tree so the repository's own ruff configuration applies.
    """
    if not files:
        return []
    command = [sys.executable, "-m", "ruff", "check", "--output-format", "json", "--no-cache", "--exit-zero"]
    command += ["--force-exclude"]  # honour the repository's exclude list even for named files
    if select:
        command += ["--select", ",".join(select)]
    try:
        completed = subprocess.run(
            [*command, "--", *files], cwd=tree, capture_output=True, text=True, timeout=RUFF_TIMEOUT_SECONDS
        )
    except subprocess.TimeoutExpired as exc:
        raise ReviewError(f"ruff timed out after {RUFF_TIMEOUT_SECONDS}s") from exc
    if completed.returncode != 0:
        raise ReviewError(f"ruff failed: {(completed.stderr or completed.stdout).strip()[-500:]}")
    try:
        reports = json.loads(completed.stdout or "[]")
    except json.JSONDecodeError as exc:
        raise ReviewError(f"ruff printed something that is not JSON: {completed.stdout[:200]!r}") from exc
    findings: list[Finding] = []
    resolved_tree = tree.resolve()
    for report in reports:
        path = Path(report["filename"]).resolve()
        try:
            relative = path.relative_to(resolved_tree).as_posix()
        except ValueError:
            continue
        line = int(report["location"]["row"])
        if line not in added.get(relative, set()):
            continue
        code = report.get("code")
        findings.append(
            Finding(
                file=relative,
                line=line,
                rule=code or "syntax-error",
                severity=lint_severity(code),
                category="lint",
                message=report.get("message", ""),
            )
        )
    return findings
