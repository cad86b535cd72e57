"""Task rows as the store returns them, built in memory: the primitives are pure decisions over rows,
so their tests need no database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from agent_orchestrator.tasks import Task, TaskStatus

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
TICKET = uuid.UUID("00000000-0000-4000-8000-000000000001")
VARIABLES = {
    "ticket": {"id": "t-1", "title": "Add a greeting", "description": "", "labels": []},
    "repo": {"path": "/srv/repo", "name": "repo", "base_branch": "main", "head_branch": "feature"},
    "context": {"change": {"head_commit": "abc123"}},
}


def task(key: str, status: str = "pending", result: Any = None, **fields: Any) -> Task:
    final = TaskStatus(status).final
    row: dict[str, Any] = {
        "id": uuid.uuid4(),
        "ticket_id": TICKET,
        "phase": "IMPLEMENTATION",
        "key": key,
        "title": key,
        "capability": "code_review",
        "request_type": "REVIEW_CODE",
        "payload": {},
        "priority": 0,
        "depends_on": [],
        "locks": [],
        "status": TaskStatus(status),
        "attempt": 1,
        "failures": 0,
        "max_attempts": 3,
        "timeout_seconds": 600.0,
        "not_before": T0,
        "claimed_by": None,
        "assigned_agent": "code-review",
        "lease_expires_at": None,
        "deadline_at": None,
        "cancel_requested": False,
        "result": result,
        "error": None,
        "error_class": None,
        "error_kind": None,
        "blocked_reason": None,
        "wait_reason": None,
        "created_at": T0,
        "updated_at": T0,
        "started_at": T0,
        "finished_at": T0 if final else None,
    }
    row.update(fields)
    return Task.model_validate(row)


def review(verdict: str, *findings: tuple[str, int | None, str]) -> dict[str, Any]:
    """A REVIEW_CODE result (services/code_review/models.py ReviewResult) with these findings."""
    return {
        "repo": "/srv/repo",
        "base_commit": "b" * 40,
        "head_commit": "h" * 40,
        "verdict": verdict,
        "decided_by": {"verdict": verdict, "rule": "test", "reason": "crafted"},
        "findings": [
            {
                "file": f,
                "line": line,
                "rule": rule,
                "severity": "warning",
                "category": "lint",
                "message": rule,
            }
            for f, line, rule in findings
        ],
        "stats": {"files_changed": 1, "lines_added": 1, "lines_deleted": 0, "python_files_linted": 1},
        "summary": "",
    }
