"""The platform's own conversations, opened when a ticket's task says something needs someone:

- a code review that requests changes: a thread with one `finding` message per finding (file and
  line attached), and a handoff of the change to `feature_dev` (GENERATE_CODE with the findings as
  the instruction). Feature-dev takes it when it has an LLM; without one it declines and the ticket's
  owner decides; a person's acceptance re-runs the review with their answer (`_handoff.answer`).
- a test run that failed: a thread with the cicd agent's failure analysis as a finding (each failed
  test attached), handed to `feature_dev` to fix; a person's acceptance re-runs the tests.

Woken by the tasks' NOTIFY (the ticket whose tasks changed); at start it looks at the last hour's
tasks, so a notification missed while no orchestrator ran is made up for. Everything is keyed by
origin (`review:<task>`, `tests:<task>`): reacting twice opens nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from agent_orchestrator.collaboration.models import (
    NewHandoff,
    NewMessage,
    NewThread,
    Participant,
    ParticipantKind,
)
from agent_orchestrator.collaboration.service import Collaboration
from agent_orchestrator.runs.notify import Listener
from agent_orchestrator.tasks import Task
from agent_orchestrator.tasks.store import TASK_UPDATES_CHANNEL

log = logging.getLogger(__name__)

AGENT = ParticipantKind.AGENT
MAX_FINDINGS = 50
# Final tasks worth a conversation that has not been opened yet (origin is the thread's key).
CANDIDATES_SQL = """
SELECT t.* FROM tasks t
WHERE (%(ticket)s::uuid IS NULL OR t.ticket_id = %(ticket)s)
  AND t.finished_at > now() - interval '1 hour'
  AND ((t.request_type = 'REVIEW_CODE' AND t.status = 'succeeded'
        AND t.result->>'verdict' = 'request_changes')
    OR (t.request_type = 'RUN_PIPELINE' AND (t.status = 'failed' OR t.result->>'status' = 'failed')))
  AND NOT EXISTS (
    SELECT 1 FROM collab_handoffs h
    WHERE h.origin IN ('review:' || t.id::text, 'tests:' || t.id::text)
  )
ORDER BY t.finished_at
LIMIT 100
"""


class ReviewReactions:
    def __init__(self, collaboration: Collaboration, database_url: str) -> None:
        self.collab = collaboration
        self.database_url = database_url

    async def run(self, stop: asyncio.Event) -> None:
        listener = Listener(self.database_url, [TASK_UPDATES_CHANNEL], name="devtools-collab-reactions")
        await listener.start()
        changed = listener.subscribe(TASK_UPDATES_CHANNEL)
        try:
            await self._react_safely(None)
            while not stop.is_set():
                if await changed.wait(2.0):
                    await self._react_safely(None)
        finally:
            changed.close()
            await listener.stop()

    async def _react_safely(self, ticket_id: UUID | None) -> None:
        try:
            await self.react(ticket_id)
        except (OSError, psycopg.OperationalError) as exc:
            log.warning("collaboration reactions failed", extra={"error": str(exc)})
        except Exception:  # a bug must not stop the reactions for good
            log.exception("collaboration reactions failed unexpectedly")

    async def react(self, ticket_id: UUID | None = None) -> int:
        async with self.collab.store.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(CANDIDATES_SQL, {"ticket": ticket_id})
            tasks = [Task.model_validate(r) for r in await cur.fetchall()]
        for task in tasks:
            if task.request_type == "REVIEW_CODE":
                await self.changes_requested(task)
            else:
                await self.tests_failed(task)
        return len(tasks)

    async def changes_requested(self, task: Task) -> None:
        result: dict[str, Any] = task.result or {}
        findings = [f for f in result.get("findings") or [] if isinstance(f, dict)][:MAX_FINDINGS]
        origin = f"review:{task.id}"
        thread = await self.collab.start_thread(
            NewThread(
                topic=f"review requested changes: {task.title or task.key}"[:300],
                ticket_id=task.ticket_id,
                task_id=task.id,
                participants=[Participant(name="feature-dev", kind=AGENT)],
            ),
            "code-review",
            AGENT,
            origin=origin,
        )
        for n, finding in enumerate(findings, 1):
            where = (
                f"{finding.get('file')}:{finding.get('line')}" if finding.get("line") else finding.get("file")
            )
            attachment: dict[str, Any] = {"type": "file_line", "path": str(finding.get("file") or "?")[:1000]}
            if isinstance(finding.get("line"), int) and finding["line"] >= 1:
                attachment["line"] = finding["line"]
            if finding.get("rule"):
                attachment["rule"] = str(finding["rule"])[:200]
            body = f"[{finding.get('severity', '?')}] {where}: {finding.get('message', '')}"
            await self.collab.post(
                thread.id,
                "code-review",
                AGENT,
                NewMessage.model_validate(
                    {"kind": "finding", "body": body[:20_000], "attachments": [attachment],
                     "client_key": f"{origin}:finding:{n}"}
                ),
            )  # fmt: skip
        verdict = result.get("decided_by") or {}
        summary = str(verdict.get("reason") or result.get("summary") or "the review requested changes")
        instruction = "Address the code review's findings:\n" + "\n".join(
            f"- {f.get('file')}:{f.get('line') or ''} {f.get('message', '')}" for f in findings
        )
        payload = task.payload
        await self.collab.request_handoff(
            NewHandoff(
                thread_id=thread.id,
                ticket_id=task.ticket_id,
                task_id=task.id,
                to_capability="feature_dev",
                request_type="GENERATE_CODE",
                reason=f"code review requested changes: {summary}"[:4000],
                context={
                    "repo": payload.get("repo"),
                    "base_ref": payload.get("head") or payload.get("base") or "HEAD",
                    "instruction": instruction[:20_000],
                    "on_person": {
                        "capability": "code_review",
                        "request_type": "REVIEW_CODE",
                        "payload": payload,
                    },
                },
            ),
            "code-review",
            AGENT,
            origin=origin,
        )

    async def tests_failed(self, task: Task) -> None:
        result: dict[str, Any] = task.result or {}
        origin = f"tests:{task.id}"
        thread = await self.collab.start_thread(
            NewThread(
                topic=f"tests failed: {task.title or task.key}"[:300],
                ticket_id=task.ticket_id,
                task_id=task.id,
                participants=[Participant(name="feature-dev", kind=AGENT)],
            ),
            "cicd",
            AGENT,
            origin=origin,
        )
        failed = [str(t) for t in result.get("failed_tests") or []][:MAX_FINDINGS]
        analysis = result.get("diagnosis") or task.error or f"{result.get('failed', '?')} test(s) failed"
        tail = str(result.get("log_tail") or "")[-4000:]
        body = f"{analysis}\n\n{tail}".strip()
        attachments = [{"type": "test_failure", "test": name[:1000]} for name in failed]
        await self.collab.post(
            thread.id,
            "cicd",
            AGENT,
            NewMessage.model_validate(
                {
                    "kind": "finding",
                    "body": body[:20_000],
                    "attachments": attachments,
                    "client_key": f"{origin}:analysis",
                }
            ),
        )
        payload = task.payload
        await self.collab.request_handoff(
            NewHandoff(
                thread_id=thread.id,
                ticket_id=task.ticket_id,
                task_id=task.id,
                to_capability="feature_dev",
                request_type="GENERATE_CODE",
                reason=f"tests failed: {', '.join(failed[:5]) or analysis}"[:4000],
                context={
                    "repo": payload.get("repo"),
                    "base_ref": payload.get("ref") or "HEAD",
                    "instruction": f"Make the failing tests pass:\n{body}"[:20_000],
                    "on_person": {"capability": "cicd", "request_type": "RUN_PIPELINE", "payload": payload},
                },
            ),
            "cicd",
            AGENT,
            origin=origin,
        )
