"""The ticket store: thin async wrappers over the stored procedures of config/state/070_tickets.sql.
Every statement is one autocommit transaction; the procedures' errors come back as TicketErrors.

The one thing decided here rather than in SQL is whether a phase move is allowed: the phase file
of the ticket says so (`PhaseMachine.check`), and transition_ticket then serializes the move
(row lock + version), so a check made against a phase that changed meanwhile never lands.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from agent_orchestrator.tickets.errors import StaleVersion, TicketNotFound, ticket_error_from
from agent_orchestrator.tickets.machine import PhaseMachine
from agent_orchestrator.tickets.models import (
    PhaseHistoryEntry,
    PhaseTransition,
    Ticket,
    TicketCreate,
    TicketQuery,
    TicketUpdate,
)
from agent_orchestrator.tickets.phases import PHASES_DIR, load_phase_machine

CREATE_SQL = """
SELECT * FROM create_ticket(
    p_title => %(title)s, p_repo_path => %(repo_path)s, p_created_by => %(created_by)s, p_phase => %(phase)s,
    p_description => %(description)s, p_base_branch => %(base_branch)s, p_head_branch => %(head_branch)s,
    p_priority => %(priority)s, p_labels => %(labels)s::text[], p_phase_file => %(phase_file)s)
"""
UPDATE_SQL = "SELECT * FROM update_ticket(%s, %s, %s)"
TRANSITION_SQL = "SELECT * FROM transition_ticket(%s, %s, %s, %s, %s, %s)"
MERGE_CONTEXT_SQL = "SELECT * FROM merge_ticket_context(%s, %s, %s, %s)"
UPDATE_CONTEXT_SQL = "SELECT * FROM update_ticket_context(%s, %s, %s, %s, %s)"
SET_RUN_SQL = "SELECT * FROM set_ticket_run(%s, %s)"
GET_SQL = "SELECT * FROM tickets WHERE id = %s"
# The ticket plus the phase it entered its current phase from (where BLOCKED may return to).
GET_WITH_PREVIOUS_SQL = """
SELECT t.*, (SELECT h.from_phase FROM phase_history h WHERE h.ticket_id = t.id ORDER BY h.id DESC LIMIT 1)
       AS previous_phase
FROM tickets t WHERE t.id = %s
"""
HISTORY_SQL = "SELECT * FROM phase_history WHERE ticket_id = %s ORDER BY id"
EXISTS_SQL = "SELECT 1 FROM tickets WHERE id = %s"
LIST_SQL = """
SELECT * FROM tickets
WHERE (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(phase)s::text IS NULL OR phase = %(phase)s)
  AND (%(priority)s::text IS NULL OR priority = %(priority)s)
  AND (%(label)s::text IS NULL OR labels @> ARRAY[%(label)s::text])
  AND (%(created_by)s::text IS NULL OR created_by = %(created_by)s)
ORDER BY created_at DESC, id
LIMIT %(limit)s OFFSET %(offset)s
"""

# A move without an expected version re-reads and re-checks when another move won the race; a
# handful of rounds is plenty unless something moves the ticket in a loop.
TRANSITION_ROUNDS = 5


class TicketStore:
    """Tickets over the project pool (autocommit, dict rows)."""

    def __init__(self, pool: AsyncConnectionPool, *, phases_dir: Path = PHASES_DIR) -> None:
        self.pool = pool
        self.phases_dir = phases_dir
        self._machines: dict[str, PhaseMachine] = {}

    def machine(self, phase_file: str) -> PhaseMachine:
        """The phase machine of config/phases/<phase_file>.yaml, loaded once per store."""
        if phase_file not in self._machines:
            self._machines[phase_file] = load_phase_machine(phase_file, self.phases_dir)
        return self._machines[phase_file]

    @asynccontextmanager
    async def _errors(self) -> AsyncIterator[None]:
        try:
            yield
        except psycopg.Error as exc:
            mapped = ticket_error_from(exc)
            if mapped is None:
                raise
            raise mapped from None

    async def _row(self, sql: str, params: Any) -> dict[str, Any] | None:
        async with self._errors(), self.pool.connection() as conn:
            cur = await conn.execute(sql, params)
            return await cur.fetchone()  # type: ignore[return-value]

    async def _ticket(self, sql: str, params: Any) -> Ticket:
        row = await self._row(sql, params)
        assert row is not None, "the ticket procedures return the row or raise"
        return Ticket.model_validate(row)

    async def create(self, ticket: TicketCreate) -> Ticket:
        """A new ticket in the first phase of its phase file, with its first phase_history row."""
        machine = self.machine(ticket.phase_file)
        params = {
            "title": ticket.title,
            "repo_path": ticket.repo.path,
            "created_by": ticket.created_by,
            "phase": machine.initial,
            "description": ticket.description,
            "base_branch": ticket.repo.base_branch,
            "head_branch": ticket.repo.head_branch,
            "priority": ticket.priority.value,
            "labels": ticket.labels,
            "phase_file": ticket.phase_file,
        }
        return await self._ticket(CREATE_SQL, params)

    async def get(self, ticket_id: UUID) -> Ticket:
        row = await self._row(GET_SQL, (ticket_id,))
        if row is None:
            raise TicketNotFound(ticket_id)
        return Ticket.model_validate(row)

    async def list_tickets(self, query: TicketQuery | None = None) -> list[Ticket]:
        """Tickets matching every given filter, newest first (limit/offset bounded by TicketQuery)."""
        query = query or TicketQuery()
        params = {
            "status": query.status.value if query.status else None,
            "phase": query.phase,
            "priority": query.priority.value if query.priority else None,
            "label": query.label,
            "created_by": query.created_by,
            "limit": query.limit,
            "offset": query.offset,
        }
        async with self._errors(), self.pool.connection() as conn:
            cur = await conn.execute(LIST_SQL, params)
            return [Ticket.model_validate(r) for r in await cur.fetchall()]

    async def update(self, ticket_id: UUID, expected_version: int, changes: TicketUpdate) -> Ticket:
        """Apply a person's edit; StaleVersion (with the current version) when someone changed it first."""
        return await self._ticket(UPDATE_SQL, (ticket_id, expected_version, Jsonb(changes.changes())))

    async def transition(self, ticket_id: UUID, move: PhaseTransition) -> Ticket:
        """Move the ticket to `move.to_phase` if its phase file allows it from the current phase
        (TransitionRefused with the allowed list otherwise); the status follows the phase."""
        for _ in range(TRANSITION_ROUNDS):
            row = await self._row(GET_WITH_PREVIOUS_SQL, (ticket_id,))
            if row is None:
                raise TicketNotFound(ticket_id)
            ticket = Ticket.model_validate(row)
            if move.expected_version is not None and move.expected_version != ticket.version:
                raise StaleVersion(ticket_id, move.expected_version, ticket.version)
            machine = self.machine(ticket.phase_file)
            machine.check(ticket.phase, move.to_phase, previous=row["previous_phase"])
            params = (
                ticket_id,
                ticket.version,  # the version checked above: a move in between makes this one stale
                move.to_phase,
                machine.status_of(move.to_phase).value,
                move.actor,
                move.reason,
            )
            try:
                return await self._ticket(TRANSITION_SQL, params)
            except StaleVersion:
                if move.expected_version is not None:
                    raise
                # The caller asked for "whatever is current": check again against the new phase.
        raise StaleVersion(ticket_id, None, (await self.get(ticket_id)).version)

    async def history(self, ticket_id: UUID) -> list[PhaseHistoryEntry]:
        """Every phase move of the ticket, oldest first (the first is from None to the initial phase)."""
        async with self._errors(), self.pool.connection() as conn:
            rows = await (await conn.execute(HISTORY_SQL, (ticket_id,))).fetchall()
            if not rows and await (await conn.execute(EXISTS_SQL, (ticket_id,))).fetchone() is None:
                raise TicketNotFound(ticket_id)
        return [PhaseHistoryEntry.model_validate(r) for r in rows]

    async def merge_context(
        self, ticket_id: UUID, key: str, value: Any, *, expected_version: int | None = None
    ) -> Ticket:
        """context[key] = value (any JSON); later phases read it as {context.<key>...}."""
        return await self._ticket(MERGE_CONTEXT_SQL, (ticket_id, key, Jsonb(value), expected_version))

    async def update_context(
        self,
        ticket_id: UUID,
        values: Mapping[str, Any] | None = None,
        remove: Sequence[str] = (),
        *,
        expected_version: int | None = None,
        allow_reserved: bool = False,
    ) -> Ticket:
        """Set `values` and remove `remove` from the context in one statement (one version bump), if
        `expected_version` is current (None: whatever is). Keys starting with '_' (`_sections`,
        `_summary`) are the platform's: only `allow_reserved=True` (the ticket workflow) writes them.
        A key to remove must be in the context (TicketArgumentError naming `remove[i]` otherwise)."""
        params = (ticket_id, expected_version, Jsonb(dict(values or {})), list(remove), allow_reserved)
        return await self._ticket(UPDATE_CONTEXT_SQL, params)

    async def set_run(self, ticket_id: UUID, run_id: UUID | None) -> Ticket:
        """Attach the ticket's workflow run (None detaches it)."""
        return await self._ticket(SET_RUN_SQL, (ticket_id, run_id))
