"""The review policy: how findings decide approve / comment / request_changes.

1. `blocking-findings`: any finding of severity `error` (a known secret format, a
   private key, a hard-coded password, a lint error such as an undefined name or a
   syntax error) -> `request_changes`.
2. `warnings-only`: otherwise any `warning` (style lint, complexity over the
   threshold, high-entropy string, binary or large file, source without tests)
   -> `comment`.
3. `no-findings`: otherwise -> `approve`.
"""

from __future__ import annotations

from services.code_review.models import Finding, VerdictDecision

# Order in which blocking findings are named: secrets first, they are the costliest to leak.
_CATEGORY_ORDER = {"secret": 0, "lint": 1, "complexity": 2, "file": 3, "tests": 4}


def sort_findings(findings: list[Finding]) -> list[Finding]:
    severity_order = {"error": 0, "warning": 1, "info": 2}
    return sorted(
        findings,
        key=lambda f: (severity_order[f.severity], _CATEGORY_ORDER[f.category], f.file, f.line or 0, f.rule),
    )


def decide(findings: list[Finding]) -> VerdictDecision:
    errors = [f for f in findings if f.severity == "error"]
    if errors:
        return VerdictDecision(
            verdict="request_changes",
            rule="blocking-findings",
            reason=f"{len(errors)} blocking finding(s): {_name(errors)}",
        )
    warnings = [f for f in findings if f.severity == "warning"]
    if warnings:
        return VerdictDecision(
            verdict="comment", rule="warnings-only", reason=f"{len(warnings)} warning(s): {_name(warnings)}"
        )
    return VerdictDecision(verdict="approve", rule="no-findings", reason="no findings on the changed lines")


def _name(findings: list[Finding], limit: int = 10) -> str:
    named = [f"{f.file}:{f.line} {f.rule}" if f.line else f"{f.file} {f.rule}" for f in findings[:limit]]
    more = f" and {len(findings) - limit} more" if len(findings) > limit else ""
    return ", ".join(named) + more
