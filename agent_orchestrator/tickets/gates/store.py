"""The gate store: artifacts and evaluation results over config/state/090_gates.sql.

Thin async wrappers, one autocommit statement each; the procedures' errors come back as TicketErrors
(TicketNotFound for an unknown ticket, TicketArgumentError naming the argument), as the ticket store's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from agent_orchestrator.tasks import Task
from agent_orchestrator.tickets.errors import TicketNotFound, ticket_error_from
from agent_orchestrator.tickets.gates.artifacts import artifacts_from_tasks
from agent_orchestrator.tickets.gates.models import (
    GateArtifact,
    GateResult,
    GateResultRecord,
    parse_visit_label,
)

RECORD_ARTIFACTS_SQL = "SELECT * FROM record_gate_artifacts(%s, %s, %s)"
RECORD_RESULT_SQL = "SELECT * FROM record_gate_result(%s, %s, %s, %s, %s)"
ARTIFACTS_SQL = """
SELECT * FROM phase_gate_artifacts
WHERE ticket_id = %(ticket_id)s AND (%(phase)s::text IS NULL OR phase = %(phase)s)
ORDER BY id
"""
RESULTS_SQL = """
SELECT * FROM phase_gate_results
WHERE ticket_id = %(ticket_id)s AND (%(phase)s::text IS NULL OR phase = %(phase)s)
ORDER BY id
"""
# Every visit of a phase: its bare name or NAME#n (see visit_label).
FAILED_SQL = """
SELECT phase FROM phase_gate_results
WHERE ticket_id = %s AND verdict = 'failed' AND (phase = %s OR phase LIKE %s)
"""
EXISTS_SQL = "SELECT 1 FROM tickets WHERE id = %s"


class GateStore:
    """Gate artifacts and results over the project pool (autocommit, dict rows)."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    @asynccontextmanager
    async def _errors(self) -> AsyncIterator[None]:
        try:
            yield
        except psycopg.Error as exc:
            mapped = ticket_error_from(exc)
            if mapped is None:
                raise
            raise mapped from None

    async def _rows(self, sql: str, params: Any) -> list[dict[str, Any]]:
        async with self._errors(), self.pool.connection() as conn:
            cur = await conn.execute(sql, params)
            return await cur.fetchall()  # type: ignore[return-value]

    async def _require_ticket(self, ticket_id: UUID) -> None:
        if not await self._rows(EXISTS_SQL, (ticket_id,)):
            raise TicketNotFound(ticket_id)

    async def record_artifacts(
        self, ticket_id: UUID, phase: str, tasks: Iterable[Task]
    ) -> list[GateArtifact]:
        """Record what the succeeded tasks of a phase visit produced (`artifacts_of`); idempotent per
        (task, kind), a later attempt of a task replacing an earlier one's. Returns the stored rows."""
        found = artifacts_from_tasks(tasks, phase)
        if not found:
            await self._require_ticket(ticket_id)  # the procedure's check, for an empty batch too
            return []
        items = [
            {
                "kind": a.kind,
                "task_id": str(a.task_id),
                "attempt": a.attempt,
                "agent": a.agent,
                "content": a.content,
                "reference": a.reference,
            }
            for a in found
        ]
        rows = await self._rows(RECORD_ARTIFACTS_SQL, (ticket_id, phase, Jsonb(items)))
        return [GateArtifact.model_validate(row) for row in rows]

    async def artifacts(self, ticket_id: UUID, phase: str | None = None) -> list[GateArtifact]:
        """The ticket's artifacts in the order they were recorded; only one phase visit's with `phase`."""
        rows = await self._rows(ARTIFACTS_SQL, {"ticket_id": ticket_id, "phase": phase})
        if not rows:
            await self._require_ticket(ticket_id)
        return [GateArtifact.model_validate(row) for row in rows]

    async def record_result(
        self, ticket_id: UUID, phase: str, result: GateResult, evaluated_by: str
    ) -> GateResultRecord:
        """Keep one evaluation of a phase visit's gate (a new row every time)."""
        criteria = [c.model_dump(mode="json") for c in result.criteria]
        params = (ticket_id, phase, Jsonb(criteria), result.verdict, evaluated_by)
        (row,) = await self._rows(RECORD_RESULT_SQL, params)
        return GateResultRecord.model_validate(row)

    async def results(self, ticket_id: UUID, phase: str | None = None) -> list[GateResultRecord]:
        """Every evaluation of the ticket's gates, oldest first; only one phase visit's with `phase`."""
        rows = await self._rows(RESULTS_SQL, {"ticket_id": ticket_id, "phase": phase})
        if not rows:
            await self._require_ticket(ticket_id)
        return [GateResultRecord.model_validate(row) for row in rows]

    async def failed_rounds(self, ticket_id: UUID, phase: str) -> int:
        """How many evaluations of the gate of `phase` (a phase name: every visit counts) failed: what
        `decide` compares with on_fail's max_rounds."""
        rows = await self._rows(FAILED_SQL, (ticket_id, phase, f"{phase}#%"))
        # LIKE's '_' matches any character: keep the labels that really are visits of this phase.
        return sum(1 for row in rows if _is_visit_of(row["phase"], phase))


def _is_visit_of(label: str, phase: str) -> bool:
    try:
        return parse_visit_label(label)[0] == phase
    except ValueError:
        return False
