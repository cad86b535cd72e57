"""A deploy that failed its verification tells the people in the loop why, in a thread on the run:
the health check as a finding and the rollback as a decision, each with the agent's report attached.
Keyed by the run and the environment, so a resumed or retried step posts nothing twice."""

from __future__ import annotations

import json
from typing import Any

from agent_orchestrator.collaboration import (
    Collaboration,
    CollaborationStore,
    NewMessage,
    NewThread,
    ParticipantKind,
)
from agent_orchestrator.runs.context import current_run
from agent_orchestrator.workflows.agent_calls import workflow_resources

AUTHOR = "infrastructure"
MAX_REPORT_BYTES = 16_000


def _bounded(report: dict[str, Any]) -> dict[str, Any]:
    text = json.dumps(report, default=str)
    return report if len(text) <= MAX_REPORT_BYTES else {"truncated": text[:MAX_REPORT_BYTES]}


async def post_failed_verification(environment: str, verification: dict[str, Any]) -> str:
    """Open (or find) the run's thread about `environment` and post what verification found; its id."""
    run = current_run()
    collab = Collaboration(CollaborationStore(run.pool), workflow_resources().bus)
    origin = f"deploy:{run.run_id}:{environment}"
    thread = await collab.start_thread(
        NewThread(topic=f"the deploy to {environment} failed its verification", run_id=run.run_id),
        AUTHOR,
        ParticipantKind.AGENT,
        origin=origin,
    )
    health = verification.get("health") or {}
    rollback = verification.get("rollback") or {}
    why = verification.get("reason") or health.get("reason")
    notes = [
        (
            "finding",
            f"health check: {health.get('status', '?')}: {why}",
            {
                "type": "link",
                "label": "health report",
                "ref": str(health.get("release_id") or ""),
                "data": _bounded(health),
            },
            "health",
        ),
        (
            "decision",
            f"rollback: {rollback.get('status', 'not made')}: {rollback.get('message') or '-'}",
            {
                "type": "link",
                "label": "rollback",
                "ref": str(rollback.get("to_release") or ""),
                "data": _bounded(rollback),
            },
            "rollback",
        ),
    ]
    for kind, body, attachment, key in notes:
        message = NewMessage.model_validate(
            {
                "kind": kind,
                "body": body[:20_000],
                "attachments": [attachment],
                "client_key": f"{origin}:{key}",
            }
        )
        await collab.post(thread.id, AUTHOR, ParticipantKind.AGENT, message)
    return str(thread.id)
