"""The `ticket` workflow: one durable run per ticket, moving it through the phases of its phase file.

One node, `advance`, handles the ticket's current phase and loops until the ticket is closed:

- a terminal phase (DONE, CANCELLED) ends the run with a Markdown report;
- BLOCKED waits for a person (`interrupt`, waiting_for=person): they move the ticket on with
  `devtools ticket transition` or the API, which resumes the run;
- an open phase generates its tasks from the phase file's templates (idempotent: a resumed or
  re-executed node finds them already created), then waits for them without holding a worker
  (`interrupt`, waiting_for=tasks; the ticket waker resumes it when they are all final). All
  succeeded: each task's result goes into the ticket's context under its key, and the ticket moves
  to the phase's first `next`. Any failed: BLOCKED, naming the failed tasks. A template that cannot
  be resolved (no head branch pushed yet): BLOCKED, naming the placeholder.

A crash anywhere resumes from the last checkpoint and re-reads the ticket, so nothing is done twice:
tasks are created once per phase and a transition already made is simply found made.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any
from uuid import UUID

from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt
from pydantic import BaseModel, ConfigDict, Field

from agent_orchestrator.runs.context import current_run
from agent_orchestrator.runs.queue import RunQueue
from agent_orchestrator.tasks import TaskStatus, TaskStore
from agent_orchestrator.tickets import (
    WAITING_FOR_PERSON,
    WAITING_FOR_TASKS,
    PhaseTransition,
    Ticket,
    TicketStatus,
    TicketStore,
    VariableError,
    template_variables,
)
from agent_orchestrator.workflows.agent_calls import emit_event
from agent_orchestrator.workflows.state import MultiAgentState, append_list
from shared.bus import BusUnavailable, InterAgentEventType

log = logging.getLogger(__name__)

ACTOR = "ticket-workflow"
# Every phase visit is one step; a ticket blocked and resumed many times needs more than LangGraph's 25.
RECURSION_LIMIT = 500


class TicketInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ticket_id: UUID = Field(description="the ticket this run moves through its phases")


class TicketState(MultiAgentState, total=False):
    ticket_id: str
    phases: Annotated[list[dict[str, Any]], append_list]
    closed: bool


def _stores() -> tuple[TicketStore, TaskStore, RunQueue]:
    pool = current_run().pool
    return TicketStore(pool), TaskStore(pool), RunQueue(pool)


async def _event(queue: RunQueue, kind: str, data: dict[str, Any]) -> None:
    await queue.add_event(current_run().run_id, kind, "advance", data)


async def _move(tickets: TicketStore, queue: RunQueue, ticket: Ticket, to: str, reason: str) -> Ticket:
    moved = await tickets.transition(
        ticket.id,
        PhaseTransition(to_phase=to, actor=ACTOR, reason=reason[:2000], expected_version=ticket.version),
    )
    change = {"ticket_id": str(ticket.id), "from": ticket.phase, "to": to, "reason": reason[:500]}
    await _event(queue, "ticket_phase", change)
    try:
        await emit_event(InterAgentEventType.TICKET_PHASE_CHANGED, change, str(ticket.id))
    except BusUnavailable as exc:  # the move is in SQL and in the run events; observers miss one broadcast
        log.warning(
            "ticket phase change not broadcast", extra={"ticket_id": str(ticket.id), "error": str(exc)}
        )
    return moved


async def advance(state: TicketState) -> dict[str, Any]:
    tickets, tasks, queue = _stores()
    ticket = await tickets.get(UUID(state["ticket_id"]))
    machine = tickets.machine(ticket.phase_file)
    phase = machine.phase(ticket.phase)
    if phase.terminal:
        return {"closed": True, "final_result": await _report(tickets, tasks, ticket)}
    if ticket.status is TicketStatus.BLOCKED:
        interrupt({"waiting_for": WAITING_FOR_PERSON, "ticket_id": str(ticket.id), "phase": ticket.phase})
        return {}  # resumed: a person moved the ticket; the next visit reads where it is now
    try:
        specs = machine.tasks_for(phase.name, template_variables(ticket))
    except VariableError as exc:
        await _move(tickets, queue, ticket, "BLOCKED", f"{phase.name} cannot start: {exc}")
        return {"phases": [{"phase": phase.name, "outcome": "blocked", "reason": str(exc)}]}
    await tasks.create_tasks(ticket.id, phase.name, specs)
    summary = await tasks.phase_summary(ticket.id, phase.name)
    while not summary.all_final:
        interrupt({"waiting_for": WAITING_FOR_TASKS, "ticket_id": str(ticket.id), "phase": phase.name})
        summary = await tasks.phase_summary(ticket.id, phase.name)
    phase_tasks = await tasks.list_tasks(ticket.id, phase=phase.name)
    failed = [t for t in phase_tasks if t.status is not TaskStatus.SUCCEEDED]
    ticket = await tickets.get(ticket.id)  # the ticket may have moved while we waited (cancelled)
    if ticket.phase != phase.name:
        return {}
    if failed:
        reasons = "; ".join(
            f"{t.key} {t.status.value}: {t.error or t.blocked_reason or ''}".strip() for t in failed
        )
        await _move(tickets, queue, ticket, "BLOCKED", f"{phase.name} tasks did not succeed: {reasons}")
        return {"phases": [{"phase": phase.name, "outcome": "blocked", "reason": reasons}]}
    for task in phase_tasks:
        ticket = await tickets.merge_context(ticket.id, task.key, task.result)
    target = phase.next[0]
    await _move(tickets, queue, ticket, target, f"all {len(phase_tasks)} {phase.name} tasks succeeded")
    return {"phases": [{"phase": phase.name, "outcome": "succeeded", "tasks": len(phase_tasks)}]}


def route(state: TicketState) -> str:
    return END if state.get("closed") else "advance"


async def _report(tickets: TicketStore, tasks: TaskStore, ticket: Ticket) -> dict[str, Any]:
    history = await tickets.history(ticket.id)
    all_tasks = await tasks.list_tasks(ticket.id)
    lines = [
        f"# {ticket.title}",
        "",
        f"Ticket `{ticket.id}`: **{ticket.phase}** ({ticket.status.value}).",
        "",
    ]
    lines += ["## Phases", "", "| from | to | by | why |", "|---|---|---|---|"]
    lines += [f"| {h.from_phase or '-'} | {h.to_phase} | {h.actor} | {h.reason} |" for h in history]
    lines += ["", "## Tasks", "", "| phase | task | agent | status | attempts |", "|---|---|---|---|---|"]
    lines += [
        f"| {t.phase} | {t.key} | {t.assigned_agent or '-'} | {t.status.value} | {t.attempt} |"
        for t in all_tasks
    ]
    return {
        "ok": ticket.status is TicketStatus.DONE,
        "reason": f"ticket {ticket.phase}",
        "status": ticket.status.value,
        "report": "\n".join(lines),
    }


def build_ticket_graph() -> StateGraph:
    graph = StateGraph(TicketState)
    graph.add_node("advance", advance)
    graph.add_edge(START, "advance")
    graph.add_conditional_edges("advance", route, ["advance", END])
    return graph
