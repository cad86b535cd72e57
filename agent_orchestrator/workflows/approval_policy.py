"""Who has to approve a deploy: a person, or the policy itself.

A person is needed when any rule below fires; otherwise (a non-protected environment with
a clean `approve` review and a modest diff) the deploy is approved automatically and
the report says so, naming the rules that were checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PROTECTED_ENVIRONMENTS: frozenset[str] = frozenset({"production", "prod"})
DEFAULT_MAX_AUTO_APPROVE_LINES = 400


@dataclass(frozen=True)
class ApprovalDecision:
    needs_person: bool
    reasons: list[str] = field(default_factory=list)  # why a person is needed (empty when automatic)

    def as_dict(self) -> dict[str, Any]:
        return {"needs_person": self.needs_person, "reasons": list(self.reasons)}


def decide_approval(
    environment: str,
    review: dict[str, Any],
    *,
    max_auto_approve_lines: int = DEFAULT_MAX_AUTO_APPROVE_LINES,
    protected: frozenset[str] = PROTECTED_ENVIRONMENTS,
) -> ApprovalDecision:
    """Apply the policy to the review result (verdict and diff size)."""
    reasons: list[str] = []
    if environment in protected:
        reasons.append(f"environment {environment!r} is protected")
    stats = review.get("stats") or {}
    changed = int(stats.get("lines_added", 0)) + int(stats.get("lines_deleted", 0))
    if changed > max_auto_approve_lines:
        reasons.append(f"diff of {changed} changed lines is over {max_auto_approve_lines}")
    verdict = review.get("verdict")
    if verdict != "approve":
        reasons.append(f"review verdict is {verdict!r}, not 'approve'")
    return ApprovalDecision(bool(reasons), reasons)
