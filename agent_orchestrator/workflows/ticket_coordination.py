"""The ticket workflow's `coordinate` node: a phase that applies a coordination pattern, carried out as
its tasks finish (agent_orchestrator/coordination/driver.py).

Each visit reads the phase's task rows, asks the driver what they allow now, applies it (creates the
tasks a split, a deferred step or a loop round needs; cancels what a quorum or a sync point gave up
on; writes every decision as a `coordination_<kind>` run event and a `coordination.decided`
broadcast) and returns the driver's `PatternRun` into the checkpointed state, under the phase round's
label. When nothing can be decided yet it waits without holding a worker (`interrupt`,
waiting_for=tasks) with the number of final tasks it saw and the earliest sync deadline: the ticket
waker resumes it when another task becomes final or the deadline passes. When the run is finished
the `advance` node takes over: context, failures, gate.

A crash between applying and checkpointing re-executes the visit from the same state: the driver
gives the same answer, creating tasks is idempotent by key and a cancelled task stays cancelled.
Sync deadlines are kept in the state, so a re-executed visit does not move them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from langgraph.types import interrupt

from agent_orchestrator.coordination import CoordinationError, PatternRun, Step, advance
from agent_orchestrator.runs.queue import RunQueue
from agent_orchestrator.tasks import TaskError, TaskStore
from agent_orchestrator.tickets import WAITING_FOR_TASKS, Ticket, TicketStatus, template_variables
from agent_orchestrator.tickets.phase_patterns import library, pattern_plan
from agent_orchestrator.workflows.ticket_actions import ACTOR, broadcast, move, run_event, stores
from shared.bus import InterAgentEventType

NODE = "coordinate"


async def coordinate(state: dict[str, Any]) -> dict[str, Any]:
    label = state["coordinating"]
    tickets, tasks, queue = stores()
    ticket = await tickets.get(UUID(state["ticket_id"]))
    machine = tickets.machine(ticket.phase_file)
    phase = machine.phase(ticket.phase)
    if ticket.status is not TicketStatus.OPEN or label.split("#")[0] != phase.name or phase.pattern is None:
        return {"coordinating": None}  # cancelled or moved by a person meanwhile: advance reads where it is
    variables = template_variables(ticket)
    saved = (state.get("patterns") or {}).get(label)
    rows = await tasks.list_tasks(ticket.id, phase=label)
    try:
        if saved is None:
            _, step = PatternRun.start(pattern_plan(phase.pattern, variables))
        else:
            step = advance(
                PatternRun.model_validate(saved), rows, datetime.now(UTC), variables, library=library()
            )
        if step.create:
            await tasks.create_tasks(ticket.id, label, step.create)
    except (CoordinationError, TaskError) as exc:
        # A pattern that cannot be rendered for this ticket (a parameter out of bounds, a part key too
        # long, a carried value missing): a person must look at it.
        reason = f"{phase.name} pattern {phase.pattern.name}: {exc}"
        await move(tickets, queue, ticket, "BLOCKED", reason)
        return {"coordinating": None, "phases": [{"phase": label, "outcome": "blocked", "reason": str(exc)}]}
    await _apply(step, tasks, queue, ticket)
    if step.changed:
        return {
            "patterns": {label: step.run.model_dump(mode="json")},
            "coordinating": None if step.run.finished else label,
        }
    final = sum(1 for t in rows if t.status.final)
    interrupt(
        {
            "waiting_for": WAITING_FOR_TASKS,
            "ticket_id": str(ticket.id),
            "phase": label,
            "final": final,
            "wake_at": step.wake_at.isoformat() if step.wake_at else None,
        }
    )
    return {}  # resumed: the next visit reads the rows again


async def _apply(step: Step, tasks: TaskStore, queue: RunQueue, ticket: Ticket) -> None:
    for task_id in step.cancel:
        await tasks.cancel(task_id, ACTOR)
    for event in step.events:
        data = {"ticket_id": str(ticket.id), **event.data()}
        await run_event(queue, event.run_event_kind, data, NODE)
        await broadcast(InterAgentEventType.COORDINATION_DECIDED, {"kind": event.kind, **data}, ticket)
