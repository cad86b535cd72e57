"""The collaboration store: thin async wrappers over config/state/100_collaboration.sql. Every call is
one autocommit transaction; the procedures hold the rules (idempotent posts, delivery leases, the
handoff state machine), this module maps their errors (errors.py) and shapes rows."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from agent_orchestrator.collaboration.errors import NotFound, collaboration_error_from
from agent_orchestrator.collaboration.models import (
    Handoff,
    HandoffStatus,
    Message,
    NewHandoff,
    NewMessage,
    NewThread,
    Participant,
    ParticipantKind,
    Thread,
    ThreadStatus,
)

# NOTIFY channels (see the header of 100_collaboration.sql).
MESSAGES_CHANNEL = "devtools_collab"  # payload: the thread id
HANDOFFS_CHANNEL = "devtools_handoffs"  # payload: the handoff id

MAX_PAGE = 500

THREAD_INSERT_SQL = """
INSERT INTO collab_threads (topic, ticket_id, task_id, run_id, origin, created_by)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (origin) DO NOTHING
RETURNING *
"""
THREAD_BY_ORIGIN_SQL = "SELECT * FROM collab_threads WHERE origin = %s"
THREAD_SQL = "SELECT * FROM collab_threads WHERE id = %s"
PARTICIPANTS_SQL = "SELECT name, kind FROM collab_participants WHERE thread_id = %s ORDER BY joined_at, name"
JOIN_SQL = "SELECT collab_join(%s, %s, %s)"
THREADS_SQL = """
SELECT * FROM collab_threads
WHERE (%(ticket)s::uuid IS NULL OR ticket_id = %(ticket)s)
  AND (%(run)s::uuid IS NULL OR run_id = %(run)s)
  AND (%(task)s::uuid IS NULL OR task_id = %(task)s)
  AND (%(status)s::text IS NULL OR status = %(status)s)
ORDER BY updated_at DESC, id
LIMIT %(limit)s OFFSET %(offset)s
"""
RESOLVE_SQL = """
UPDATE collab_threads SET status = %s, resolved_at = CASE WHEN %s = 'resolved' THEN now() END,
    resolved_by = CASE WHEN %s = 'resolved' THEN %s END, updated_at = now()
WHERE id = %s RETURNING *
"""
POST_SQL = "SELECT * FROM collab_post_message(%s, %s, %s, %s, %s, %s, %s, %s)"
MESSAGES_SQL = "SELECT * FROM collab_messages WHERE thread_id = %s AND id > %s ORDER BY id LIMIT %s"
MESSAGE_SQL = "SELECT * FROM collab_messages WHERE id = %s"
CLAIM_DELIVERIES_SQL = "SELECT * FROM collab_claim_deliveries(%s, %s)"
ACK_SQL = "SELECT collab_ack_delivery(%s, %s, %s, %s, %s) AS ok"
DELIVERY_FAILED_SQL = "SELECT collab_delivery_failed(%s, %s, %s, %s)"
DELIVERY_SQL = "SELECT * FROM collab_deliveries WHERE message_id = %s ORDER BY agent"
HANDOFF_INSERT_SQL = """
INSERT INTO collab_handoffs (thread_id, ticket_id, task_id, from_name, from_kind, to_capability, to_agent,
    request_type, reason, context, person, timeout_seconds, deadline_at, origin)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now() + %s, %s)
ON CONFLICT (origin) DO NOTHING
RETURNING *
"""
HANDOFF_BY_ORIGIN_SQL = "SELECT * FROM collab_handoffs WHERE origin = %s"
HANDOFF_SQL = "SELECT * FROM collab_handoffs WHERE id = %s"
HANDOFFS_SQL = """
SELECT * FROM collab_handoffs
WHERE (%(ticket)s::uuid IS NULL OR ticket_id = %(ticket)s)
  AND (%(thread)s::uuid IS NULL OR thread_id = %(thread)s)
  AND (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(person)s::text IS NULL OR person = %(person)s)
ORDER BY created_at DESC, id
LIMIT %(limit)s OFFSET %(offset)s
"""
# Handoffs the driver must look at: not offered to anyone yet, an offer that lapsed, or past the deadline.
DUE_HANDOFFS_SQL = """
SELECT * FROM collab_handoffs
WHERE status = 'offered' AND (offered_to IS NULL OR offer_deadline_at <= now() OR deadline_at <= now())
ORDER BY created_at LIMIT %s
"""
NEXT_HANDOFF_WAKEUP_SQL = """
SELECT min(least(offer_deadline_at, deadline_at)) AS at, now() AS now FROM collab_handoffs
WHERE status = 'offered'
"""
OFFER_SQL = "SELECT * FROM collab_offer_handoff(%s, %s, %s)"
DECLINE_OFFER_SQL = "SELECT * FROM collab_decline_offer(%s, %s, %s)"
TO_PERSON_SQL = "SELECT * FROM collab_handoff_to_person(%s, %s)"
ACCEPT_SQL = "SELECT * FROM collab_accept_handoff(%s, %s, %s, %s)"
PERSON_DECLINES_SQL = "SELECT * FROM collab_person_declines_handoff(%s, %s, %s)"
FOLLOW_UP_SQL = (
    "UPDATE collab_handoffs SET follow_up_task_id = %s, updated_at = now() WHERE id = %s RETURNING *"
)


class CollaborationStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    @contextlib.asynccontextmanager
    async def _cursor(self) -> AsyncIterator[psycopg.AsyncCursor[dict[str, Any]]]:
        try:
            async with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
                yield cur
        except psycopg.Error as exc:
            mapped = collaboration_error_from(exc)
            if mapped is None:
                raise
            raise mapped from None

    async def _rows(self, sql: str, params: Any) -> list[dict[str, Any]]:
        async with self._cursor() as cur:
            await cur.execute(sql, params)
            return list(await cur.fetchall())

    async def _one(self, sql: str, params: Any) -> dict[str, Any] | None:
        rows = await self._rows(sql, params)
        return rows[0] if rows else None

    # -- threads -----------------------------------------------------------------------------------

    async def create_thread(
        self, new: NewThread, by: str, by_kind: ParticipantKind, origin: str | None = None
    ) -> tuple[Thread, bool]:
        """Open a thread (once per `origin`: the platform's own threads are not opened twice); True when
        this call opened it."""
        params = (new.topic, new.ticket_id, new.task_id, new.run_id, origin, by)
        row = await self._one(THREAD_INSERT_SQL, params)
        if row is None:
            existing = await self._one(THREAD_BY_ORIGIN_SQL, (origin,))
            assert existing is not None  # the conflict was on this origin
            return await self._with_participants(existing), False
        for participant in [Participant(name=by, kind=by_kind), *new.participants]:
            await self.join(row["id"], participant)
        return await self._with_participants(row), True

    async def join(self, thread_id: UUID, participant: Participant) -> None:
        await self._rows(JOIN_SQL, (thread_id, participant.name, participant.kind.value))

    async def _with_participants(self, row: dict[str, Any]) -> Thread:
        people = await self._rows(PARTICIPANTS_SQL, (row["id"],))
        return Thread.model_validate({**row, "participants": people})

    async def thread(self, thread_id: UUID) -> Thread:
        row = await self._one(THREAD_SQL, (thread_id,))
        if row is None:
            raise NotFound(f"no thread {thread_id}")
        return await self._with_participants(row)

    async def threads(
        self,
        *,
        ticket_id: UUID | None = None,
        run_id: UUID | None = None,
        task_id: UUID | None = None,
        status: ThreadStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Thread]:
        params = {
            "ticket": ticket_id,
            "run": run_id,
            "task": task_id,
            "status": status.value if status else None,
            "limit": min(limit, MAX_PAGE),
            "offset": offset,
        }
        return [await self._with_participants(r) for r in await self._rows(THREADS_SQL, params)]

    async def set_status(self, thread_id: UUID, status: ThreadStatus, by: str) -> Thread:
        row = await self._one(RESOLVE_SQL, (status.value, status.value, status.value, by, thread_id))
        if row is None:
            raise NotFound(f"no thread {thread_id}")
        return await self._with_participants(row)

    # -- messages ----------------------------------------------------------------------------------

    async def post(
        self, thread_id: UUID, author: str, author_kind: ParticipantKind, new: NewMessage
    ) -> Message:
        attachments = Jsonb([a.model_dump(mode="json", exclude_none=True) for a in new.attachments])
        params = (
            thread_id, author, author_kind.value, new.kind.value, new.body, attachments, new.reply_to,
            new.client_key,
        )  # fmt: skip
        row = await self._one(POST_SQL, params)
        assert row is not None
        return Message.model_validate(row)

    async def messages(self, thread_id: UUID, after: int = 0, limit: int = 200) -> list[Message]:
        rows = await self._rows(MESSAGES_SQL, (thread_id, after, min(limit, MAX_PAGE)))
        return [Message.model_validate(r) for r in rows]

    async def message(self, message_id: int) -> Message | None:
        row = await self._one(MESSAGE_SQL, (message_id,))
        return Message.model_validate(row) if row else None

    # -- deliveries --------------------------------------------------------------------------------

    async def claim_deliveries(self, limit: int, lease_seconds: float) -> list[dict[str, Any]]:
        return await self._rows(CLAIM_DELIVERIES_SQL, (limit, lease_seconds))

    async def ack_delivery(self, message_id: int, agent: str, reply: dict[str, Any] | None) -> bool:
        kind = body = attachments = None
        if reply is not None:
            kind, body = reply.get("kind"), reply["body"]
            attachments = Jsonb(reply.get("attachments") or [])
        row = await self._one(ACK_SQL, (message_id, agent, kind, body, attachments))
        return bool(row and row["ok"])

    async def delivery_failed(self, message_id: int, agent: str, error: str, retry_seconds: float) -> None:
        await self._rows(DELIVERY_FAILED_SQL, (message_id, agent, error, retry_seconds))

    async def deliveries(self, message_id: int) -> list[dict[str, Any]]:
        return await self._rows(DELIVERY_SQL, (message_id,))

    # -- handoffs ----------------------------------------------------------------------------------

    async def create_handoff(
        self,
        new: NewHandoff,
        *,
        thread_id: UUID,
        by: str,
        by_kind: ParticipantKind,
        person: str,
        origin: str | None = None,
    ) -> tuple[Handoff, bool]:
        """Record a handoff (once per `origin`); True when this call recorded it."""
        params = (
            thread_id, new.ticket_id, new.task_id, by, by_kind.value, new.to_capability, new.to_agent,
            new.request_type, new.reason, Jsonb(new.context), person, new.timeout_seconds,
            timedelta(seconds=new.timeout_seconds), origin,
        )  # fmt: skip
        row = await self._one(HANDOFF_INSERT_SQL, params)
        created = row is not None
        if row is None:
            row = await self._one(HANDOFF_BY_ORIGIN_SQL, (origin,))
        assert row is not None
        return Handoff.model_validate(row), created

    async def handoff(self, handoff_id: UUID) -> Handoff:
        row = await self._one(HANDOFF_SQL, (handoff_id,))
        if row is None:
            raise NotFound(f"no handoff {handoff_id}")
        return Handoff.model_validate(row)

    async def handoffs(
        self,
        *,
        ticket_id: UUID | None = None,
        thread_id: UUID | None = None,
        status: HandoffStatus | None = None,
        person: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Handoff]:
        params = {
            "ticket": ticket_id,
            "thread": thread_id,
            "status": status.value if status else None,
            "person": person,
            "limit": min(limit, MAX_PAGE),
            "offset": offset,
        }
        return [Handoff.model_validate(r) for r in await self._rows(HANDOFFS_SQL, params)]

    async def due_handoffs(self, limit: int = 100) -> list[Handoff]:
        return [Handoff.model_validate(r) for r in await self._rows(DUE_HANDOFFS_SQL, (limit,))]

    async def seconds_until_next_handoff_due(self) -> float | None:
        row = await self._one(NEXT_HANDOFF_WAKEUP_SQL, ())
        if row is None or row["at"] is None:
            return None
        return max((row["at"] - row["now"]).total_seconds(), 0.0)

    async def _transition(self, sql: str, params: tuple[Any, ...]) -> Handoff:
        row = await self._one(sql, params)
        assert row is not None
        return Handoff.model_validate(row)

    async def offer(self, handoff_id: UUID, agent: str, offer_seconds: float) -> Handoff:
        return await self._transition(OFFER_SQL, (handoff_id, agent, offer_seconds))

    async def decline_offer(self, handoff_id: UUID, agent: str, reason: str) -> Handoff:
        return await self._transition(DECLINE_OFFER_SQL, (handoff_id, agent, reason))

    async def to_person(self, handoff_id: UUID, why: str) -> Handoff:
        return await self._transition(TO_PERSON_SQL, (handoff_id, why))

    async def accept(
        self, handoff_id: UUID, by: str, by_kind: ParticipantKind, comment: str | None
    ) -> Handoff:
        return await self._transition(ACCEPT_SQL, (handoff_id, by, by_kind.value, comment))

    async def person_declines(self, handoff_id: UUID, by: str, comment: str | None) -> Handoff:
        return await self._transition(PERSON_DECLINES_SQL, (handoff_id, by, comment))

    async def set_follow_up(self, handoff_id: UUID, task_id: UUID) -> Handoff:
        return await self._transition(FOLLOW_UP_SQL, (task_id, handoff_id))
