"""Shared by the ticket tests: a valid small phase file to break, and tickets built without a database."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from agent_orchestrator.tickets import Ticket

# The smallest phase file that uses every feature: two working phases, a context placeholder, a
# dependency, the any-open phase and both terminal kinds. Tests copy it and break one thing.
SMALL_PHASES: dict[str, Any] = {
    "description": "small",
    "from_any_open": ["CANCELLED"],
    "phases": [
        {
            "name": "START",
            "next": ["WORK"],
            "tasks": [
                {
                    "key": "a",
                    "capability": "cicd",
                    "request_type": "RUN_PIPELINE",
                    "payload": {"repo": "{repo.path}"},
                },
                {
                    "key": "b",
                    "capability": "cicd",
                    "request_type": "RUN_PIPELINE",
                    "payload": {"repo": "{repo.path}"},
                    "depends_on": ["a"],
                },
            ],
        },
        {
            "name": "WORK",
            "next": ["END"],
            "tasks": [
                {
                    "key": "c",
                    "capability": "code_review",
                    "request_type": "REVIEW_CODE",
                    "payload": {"repo": "{repo.path}", "head": "{context.a.commit}"},
                }
            ],
        },
        {"name": "END", "status": "done"},
        {"name": "CANCELLED", "status": "cancelled"},
    ],
}


def small_phases() -> dict[str, Any]:
    return copy.deepcopy(SMALL_PHASES)


def make_ticket(**overrides: Any) -> Ticket:
    now = datetime.now(UTC)
    fields: dict[str, Any] = {
        "id": uuid4(),
        "title": "Add shout()",
        "description": "Shout the greeting.",
        "repo_path": "/srv/repos/greeter",
        "base_branch": "main",
        "head_branch": "feature/shout",
        "priority": "high",
        "labels": ["api", "greeting"],
        "created_by": "alice",
        "phase": "INITIAL",
        "status": "open",
        "phase_file": "default",
        "context": {},
        "run_id": None,
        "version": 1,
        "created_at": now,
        "updated_at": now,
        "closed_at": None,
    }
    fields.update(overrides)
    return Ticket.model_validate(fields)
