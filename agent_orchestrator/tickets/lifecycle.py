"""A ticket's life on the run queue: opening it starts one durable run of the `ticket` workflow;
the waker resumes that run when the tasks of its phase are all final; cancelling stops both.

The ticket workflow (`agent_orchestrator/workflows/ticket.py`) waits for its tasks with
`interrupt({"waiting_for": "tasks", ...})`, so a waiting ticket holds no worker slot: until they are
all final, or, in a phase that applies a coordination pattern, until one more is final or a sync
point's deadline passed (`tasks_moved_on`). The waker
listens on 'devtools_task_updates' (a ticket's tasks changed) and also sweeps every few seconds,
because a notification may arrive while the run is still on its way into the interrupt: the state
is re-read from the tables every time, so a lost notification costs latency, never correctness.
The sweep also starts the run of a ticket whose opening was cut short by a crash.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg_pool import AsyncConnectionPool

from agent_orchestrator.runs.models import RunStatus
from agent_orchestrator.runs.notify import Listener
from agent_orchestrator.runs.queue import RunQueue
from agent_orchestrator.tasks import TASK_UPDATES_CHANNEL, PhaseSummary, TaskStatus, TaskStore
from agent_orchestrator.tickets.models import PhaseTransition, Priority, Ticket, TicketCreate
from agent_orchestrator.tickets.store import TicketStore

log = logging.getLogger(__name__)

TICKET_WORKFLOW = "ticket"
WAITING_FOR_TASKS = "tasks"
WAITING_FOR_PERSON = "person"
WAITING_FOR_APPROVAL = "approval"  # a gate's approval question, decided with approve/reject
# Higher runs first on the queue.
RUN_PRIORITY = {Priority.CRITICAL: 30, Priority.HIGH: 20, Priority.MEDIUM: 10, Priority.LOW: 0}
# A ticket whose run is missing this long after opening lost it to a crash: start it.
ORPHAN_AFTER_SECONDS = 5.0

LABEL_SQL = "SELECT ticket_phase_label(%s, %s, %s) AS label"
WAITING_SQL = """
SELECT t.id, t.phase, t.run_id, r.interrupt
FROM tickets t JOIN runs r ON r.id = t.run_id
WHERE r.status = 'interrupted' AND t.status = 'open' AND (%(ticket)s::uuid IS NULL OR t.id = %(ticket)s)
"""
ORPHANS_SQL = """
SELECT id FROM tickets
WHERE run_id IS NULL AND status IN ('open', 'blocked') AND created_at < now() - make_interval(secs => %s)
"""


async def start_ticket_run(queue: RunQueue, tickets: TicketStore, ticket: Ticket) -> Ticket:
    """Enqueue the ticket's workflow run and link it (the run's id is the ticket's id: idempotent)."""
    try:
        run_id = (
            await queue.enqueue(
                TICKET_WORKFLOW,
                {"ticket_id": str(ticket.id)},
                priority=RUN_PRIORITY[ticket.priority],
                created_by=ticket.created_by,
                run_id=ticket.id,
            )
        ).id
    except psycopg.errors.UniqueViolation:
        run_id = ticket.id  # started already (a retried request, the waker's sweep): link it
    return await tickets.set_run(ticket.id, run_id)


async def open_ticket(queue: RunQueue, tickets: TicketStore, create: TicketCreate) -> Ticket:
    """File the ticket and start its run. A crash in between is repaired by the waker's sweep."""
    ticket = await tickets.create(create)
    return await start_ticket_run(queue, tickets, ticket)


async def cancel_ticket(
    queue: RunQueue, tickets: TicketStore, tasks: TaskStore, ticket_id: UUID, by: str
) -> Ticket:
    """CANCELLED: its unfinished tasks are cancelled (their agents stop the work), its run ends."""
    ticket = await tickets.transition(
        ticket_id, PhaseTransition(to_phase="CANCELLED", actor=by, reason="cancelled")
    )
    await tasks.cancel_ticket(ticket_id, by)
    if ticket.run_id is not None:
        await queue.cancel(ticket.run_id, by)
    return ticket


async def phase_label(pool: AsyncConnectionPool, tickets: TicketStore, ticket: Ticket) -> str:
    """The label the tasks of the ticket's current phase round carry: the phase's name, or
    `<PHASE>#<round>` when a failed gate sent the ticket back to it (config/state/092_phase_rounds.sql)."""
    machine = tickets.machine(ticket.phase_file)
    resume_from = [p.name for p in machine.phases if p.return_to_previous]
    async with pool.connection() as conn:
        row = await (await conn.execute(LABEL_SQL, (ticket.id, ticket.phase, resume_from))).fetchone()
    return str(row["label"]) if row else ticket.phase


def pending_wait(interrupt: Any) -> dict[str, Any]:
    """The value of an interrupted ticket run's wait (`waiting_for`, `phase`, and for a coordinated
    phase `final` and `wake_at`), from its pending interrupts; {} when it waits for nothing we know."""
    for pending in interrupt or []:
        value = pending.get("value") if isinstance(pending, dict) else None
        if isinstance(value, dict) and isinstance(value.get("waiting_for"), str):
            return value
    return {}


def waiting_for(interrupt: Any) -> str | None:
    """What an interrupted ticket run waits for ('tasks', 'person' or 'approval')."""
    waiting = pending_wait(interrupt).get("waiting_for")
    return str(waiting) if waiting else None


def tasks_moved_on(wait: Mapping[str, Any], summary: PhaseSummary, now: datetime) -> bool:
    """Whether a run waiting for its phase's tasks has something new to look at: all of them final,
    or, for a coordinated phase (which waits with `final`), more final than it saw or its sync
    deadline (`wake_at`) passed."""
    if summary.all_final:
        return True
    seen = wait.get("final")
    if not isinstance(seen, int):
        return False
    final = sum(n for status, n in summary.counts.items() if TaskStatus(status).final)
    wake_at = wait.get("wake_at")
    return final > seen or (isinstance(wake_at, str) and datetime.fromisoformat(wake_at) <= now)


class TicketWaker:
    """Resumes ticket runs whose phase's tasks are all final; starts runs lost to a crash."""

    def __init__(self, pool: AsyncConnectionPool, database_url: str, sweep_seconds: float = 2.0) -> None:
        self.pool = pool
        self.database_url = database_url
        self.sweep_seconds = sweep_seconds
        self.queue = RunQueue(pool)
        self.tickets = TicketStore(pool)
        self.tasks = TaskStore(pool)

    async def run(self, stop: asyncio.Event) -> None:
        listener = Listener(self.database_url, [TASK_UPDATES_CHANNEL], name="devtools-ticket-waker")
        await listener.start()
        sub = listener.subscribe(TASK_UPDATES_CHANNEL)
        try:
            while not stop.is_set():
                try:
                    await self.wake()
                    await self.start_orphans()
                except Exception as exc:  # a database blip: the next round re-reads everything
                    log.warning("ticket waker round failed", extra={"error": str(exc)})
                stopping = asyncio.ensure_future(stop.wait())
                woken = asyncio.ensure_future(sub.wait(self.sweep_seconds))
                await asyncio.wait({stopping, woken}, return_when=asyncio.FIRST_COMPLETED)
                stopping.cancel()
                woken.cancel()
        finally:
            sub.close()
            await listener.stop()

    async def wake(self, ticket_id: UUID | None = None) -> list[UUID]:
        """Resume every (or this) open ticket's run that waits for tasks now all final, or for a person
        although the ticket is open again; returns the tickets' ids."""
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(WAITING_SQL, {"ticket": ticket_id})).fetchall()
        resumed = []
        for row in rows:
            wait = pending_wait(row["interrupt"])
            waiting = wait.get("waiting_for")
            if waiting == WAITING_FOR_PERSON:
                # The ticket is open again: a person moved it on before its run had recorded the wait.
                decision: dict[str, Any] = {"ticket": "open", "phase": row["phase"]}
            elif waiting == WAITING_FOR_TASKS:
                ticket = await self.tickets.get(row["id"])
                summary = await self.tasks.phase_summary(
                    row["id"], await phase_label(self.pool, self.tickets, ticket)
                )
                if not tasks_moved_on(wait, summary, datetime.now(UTC)):
                    continue
                decision = {"tasks": "final" if summary.all_final else "changed", "phase": row["phase"]}
            else:
                continue
            run = await self.queue.resume(row["run_id"], decision, "ticket-waker")
            if run is not None and run.status is RunStatus.QUEUED:
                resumed.append(row["id"])
                log.info("ticket resumed", extra={"ticket_id": str(row["id"]), "phase": row["phase"]})
        return resumed

    async def start_orphans(self) -> None:
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(ORPHANS_SQL, (ORPHAN_AFTER_SECONDS,))).fetchall()
        for row in rows:
            ticket = await start_ticket_run(self.queue, self.tickets, await self.tickets.get(row["id"]))
            log.warning(
                "ticket run started late (its opening was cut short)", extra={"ticket_id": str(ticket.id)}
            )
