"""What the ticket workflow's nodes do to the world, shared by them: the stores of the run's pool, a
run event, a bus broadcast, a phase transition (with both)."""

from __future__ import annotations

import logging
from typing import Any

from agent_orchestrator.runs.context import current_run
from agent_orchestrator.runs.queue import RunQueue
from agent_orchestrator.tasks import TaskStore
from agent_orchestrator.tickets import PhaseTransition, Ticket, TicketStore
from agent_orchestrator.workflows.agent_calls import emit_event
from shared.bus import BusUnavailable, InterAgentEventType

log = logging.getLogger(__name__)

ACTOR = "ticket-workflow"


def stores() -> tuple[TicketStore, TaskStore, RunQueue]:
    pool = current_run().pool
    return TicketStore(pool), TaskStore(pool), RunQueue(pool)


async def run_event(queue: RunQueue, kind: str, data: dict[str, Any], node: str = "advance") -> None:
    await queue.add_event(current_run().run_id, kind, node, data)


async def broadcast(kind: InterAgentEventType, payload: dict[str, Any], ticket: Ticket) -> None:
    """Publish a ticket's fact on the bus; it is in SQL and the run events already, so a broadcast that
    cannot be sent costs its observers only."""
    try:
        await emit_event(kind, payload, str(ticket.id))
    except BusUnavailable as exc:
        log.warning(
            "not broadcast", extra={"ticket_id": str(ticket.id), "event": kind.value, "error": str(exc)}
        )


async def move(tickets: TicketStore, queue: RunQueue, ticket: Ticket, to: str, reason: str) -> Ticket:
    """Move the ticket to `to` (the version it was read at: a concurrent move is refused), with its run
    event and broadcast."""
    moved = await tickets.transition(
        ticket.id,
        PhaseTransition(to_phase=to, actor=ACTOR, reason=reason[:2000], expected_version=ticket.version),
    )
    change = {"ticket_id": str(ticket.id), "from": ticket.phase, "to": to, "reason": reason[:500]}
    await run_event(queue, "ticket_phase", change)
    await broadcast(InterAgentEventType.TICKET_PHASE_CHANGED, change, ticket)
    return moved
