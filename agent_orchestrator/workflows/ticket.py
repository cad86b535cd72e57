"""The `ticket` workflow: one durable run per ticket, moving it through the phases of its phase file.

One node, `advance`, handles the ticket's current phase and loops until the ticket is closed (a
phase that applies a coordination pattern is carried out by the `coordinate` node first,
agent_orchestrator/workflows/ticket_coordination.py; `advance` then takes its outcome):

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

import asyncio
import logging
from typing import Annotated, Any
from uuid import UUID

from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt
from pydantic import BaseModel, ConfigDict, Field

from agent_orchestrator.coordination import PatternRun
from agent_orchestrator.runs.context import current_run
from agent_orchestrator.tasks import Task, TaskStatus, TaskStore
from agent_orchestrator.tickets import (
    WAITING_FOR_APPROVAL,
    WAITING_FOR_PERSON,
    WAITING_FOR_TASKS,
    Phase,
    Ticket,
    TicketStatus,
    TicketStore,
    VariableError,
    template_variables,
)
from agent_orchestrator.tickets.context import context_update_for_phase, summary_chat_model
from agent_orchestrator.tickets.gates import Approval, GateStore, decide, evaluate
from agent_orchestrator.tickets.lifecycle import phase_label
from agent_orchestrator.workflows.state import MultiAgentState, append_list, merge_dicts
from agent_orchestrator.workflows.ticket_actions import ACTOR, move, run_event, stores
from agent_orchestrator.workflows.ticket_coordination import coordinate
from shared.config import get_settings

log = logging.getLogger(__name__)

# Every phase visit is one step; a ticket blocked and resumed many times needs more than LangGraph's 25.
RECURSION_LIMIT = 500


class TicketInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ticket_id: UUID = Field(description="the ticket this run moves through its phases")


class TicketState(MultiAgentState, total=False):
    ticket_id: str
    phases: Annotated[list[dict[str, Any]], append_list]
    closed: bool
    # A gate waiting for a person's answer, and the answers given, by phase round label.
    pending_approval: dict[str, Any] | None
    approvals: Annotated[dict[str, Any], merge_dicts]
    # A phase applying a pattern: the round label being coordinated, and each round's PatternRun.
    coordinating: str | None
    patterns: Annotated[dict[str, Any], merge_dicts]


async def advance(state: TicketState) -> dict[str, Any]:
    pool = current_run().pool
    tickets, tasks, queue = stores()
    ticket = await tickets.get(UUID(state["ticket_id"]))
    machine = tickets.machine(ticket.phase_file)
    phase = machine.phase(ticket.phase)
    if phase.terminal:
        return {"closed": True, "final_result": await _report(tickets, tasks, ticket)}
    if ticket.status is TicketStatus.BLOCKED:
        interrupt({"waiting_for": WAITING_FOR_PERSON, "ticket_id": str(ticket.id), "phase": ticket.phase})
        return {}  # resumed: a person moved the ticket; the next visit reads where it is now
    label = await phase_label(pool, tickets, ticket)
    if phase.pattern is not None:
        run = (state.get("patterns") or {}).get(label)
        if run is None or not run.get("finished"):
            return {"coordinating": label}  # the coordinate node carries the pattern out
        phase_tasks = await tasks.list_tasks(ticket.id, phase=label)
        if not all(t.status.final for t in phase_tasks):
            # Back from BLOCKED after a person retried tasks: decide what failed again with them.
            return {"patterns": {label: PatternRun.model_validate(run).reopened()}, "coordinating": label}
        ticket = await _carry_context(tickets, ticket, label, phase_tasks)
        ticket, failures = await _pattern_outcome(
            tickets, ticket, PatternRun.model_validate(run), phase_tasks
        )
        if failures:
            reasons = "; ".join(failures)
            await move(
                tickets, queue, ticket, "BLOCKED", f"{phase.name} pattern {phase.pattern.name}: {reasons}"
            )
            return {"phases": [{"phase": label, "outcome": "blocked", "reason": reasons}]}
    else:
        try:
            specs = machine.tasks_for(phase.name, template_variables(ticket))
        except VariableError as exc:
            await move(tickets, queue, ticket, "BLOCKED", f"{phase.name} cannot start: {exc}")
            return {"phases": [{"phase": label, "outcome": "blocked", "reason": str(exc)}]}
        await tasks.create_tasks(ticket.id, label, specs)
        summary = await tasks.phase_summary(ticket.id, label)
        while not summary.all_final:
            interrupt({"waiting_for": WAITING_FOR_TASKS, "ticket_id": str(ticket.id), "phase": label})
            summary = await tasks.phase_summary(ticket.id, label)
        phase_tasks = await tasks.list_tasks(ticket.id, phase=label)
        ticket = await tickets.get(ticket.id)  # the ticket may have moved while we waited (cancelled)
        if ticket.phase != phase.name:
            return {}
        ticket = await _carry_context(tickets, ticket, label, phase_tasks)
    if phase.gate is None:
        # A pattern's outcome was judged above: a task it gave up on (a late one) does not fail it.
        unsuccessful = [t for t in phase_tasks if t.status is not TaskStatus.SUCCEEDED]
        failed = [] if phase.pattern is not None else unsuccessful
        if failed:
            reasons = "; ".join(
                f"{t.key} {t.status.value}: {t.error or t.blocked_reason or ''}".strip() for t in failed
            )
            await move(tickets, queue, ticket, "BLOCKED", f"{phase.name} tasks did not succeed: {reasons}")
            return {"phases": [{"phase": label, "outcome": "blocked", "reason": reasons}]}
        why = f"all {len(phase_tasks)} {phase.name} tasks succeeded"
        if unsuccessful:
            why = f"{phase.name} pattern succeeded; {', '.join(t.key for t in unsuccessful)} given up on"
        await move(tickets, queue, ticket, phase.next[0], why)
        return {"phases": [{"phase": label, "outcome": "succeeded", "tasks": len(phase_tasks)}]}
    return await _pass_gate(state, ticket, phase, label, phase_tasks)


async def _pattern_outcome(
    tickets: TicketStore, ticket: Ticket, run: PatternRun, phase_tasks: list[Task]
) -> tuple[Ticket, list[str]]:
    """The finished pattern's decisions into the context under their step keys (a vote's `verdict`, a
    loop's last implementation under its key), and why it failed (empty: it succeeded)."""
    outcome = run.outcome()
    if outcome:
        ticket = await tickets.update_context(ticket.id, outcome, expected_version=ticket.version)
    return ticket, run.failures(phase_tasks)


async def _carry_context(tickets: TicketStore, ticket: Ticket, label: str, phase_tasks: list[Task]) -> Ticket:
    """The phase's results into the ticket's context: raw results by task key, the aggregated
    sections and the bounded summary the next phase starts from (agent_orchestrator/tickets/context.py)."""
    chat_model = summary_chat_model(get_settings())
    update = await asyncio.to_thread(
        context_update_for_phase, ticket, label, phase_tasks, chat_model=chat_model
    )
    return await tickets.update_context(
        ticket.id, update, expected_version=ticket.version, allow_reserved=True
    )


async def _pass_gate(
    state: TicketState, ticket: Ticket, phase: Phase, label: str, phase_tasks: list[Task]
) -> dict[str, Any]:
    """Evaluate the phase's gate (recording its artifacts and the result) and follow its verdict."""
    assert phase.gate is not None
    tickets, tasks, queue = stores()
    gates = GateStore(current_run().pool)
    await gates.record_artifacts(ticket.id, label, phase_tasks)
    artifacts = await gates.artifacts(ticket.id, phase=label)
    decided = (state.get("approvals") or {}).get(label)
    approval = Approval.model_validate(decided) if decided else None
    variables = template_variables(ticket)
    result = evaluate(phase.gate, phase_tasks, artifacts, approval, variables=variables)
    if result.verdict == "waiting":
        # The approval question is asked in a node of its own (`approval`): one interrupt per node
        # execution keeps LangGraph's resume values matched to the right question.
        await gates.record_result(ticket.id, label, result, ACTOR)
        question = {
            "label": label,
            "phase": phase.name,
            "summary": result.summary,
            **result.model_dump(mode="json"),
        }
        return {"pending_approval": question}
    evaluated_by = f"{ACTOR}+{approval.by}" if approval else ACTOR
    await gates.record_result(ticket.id, label, result, evaluated_by)
    await run_event(
        queue, "gate_evaluated", {"phase": label, "verdict": result.verdict, "summary": result.summary}
    )
    # failed_rounds counts the result just recorded too: decide wants the earlier failures.
    earlier_failures = await gates.failed_rounds(ticket.id, phase.name) - (result.verdict == "failed")
    decision = decide(phase.gate, result, phase_tasks, failed_rounds=earlier_failures)
    outcome: dict[str, Any] = {"phase": label, "gate": result.verdict, "action": decision.action}
    if decision.action == "advance":
        await move(tickets, queue, ticket, phase.next[0], f"{phase.name} {result.summary}")
    elif decision.action == "back_to" and decision.phase:
        ticket = await tickets.update_context(
            ticket.id, {"feedback": result.feedback(phase.name)}, expected_version=ticket.version
        )
        await move(tickets, queue, ticket, decision.phase, f"{phase.name} gate failed: {decision.reason}")
    elif decision.action == "retry":
        for task in phase_tasks:
            if task.key in decision.retry and task.status is not TaskStatus.SUCCEEDED:
                await tasks.retry(task.id, ACTOR)
        await run_event(
            queue, "gate_retry", {"phase": label, "tasks": decision.retry, "reason": decision.reason}
        )
    else:
        await move(tickets, queue, ticket, "BLOCKED", f"{phase.name} gate failed: {decision.reason}")
    return {"phases": [outcome]}


async def approval(state: TicketState) -> dict[str, Any]:
    """Ask a person the gate's question; approve/reject (`devtools approve TICKET`) resumes with it."""
    pending = state.get("pending_approval") or {}
    decision = interrupt({"waiting_for": WAITING_FOR_APPROVAL, "ticket_id": state["ticket_id"], **pending})
    decision = decision if isinstance(decision, dict) else {}
    answer = {
        "approved": bool(decision.get("approved")),
        "by": str(decision.get("approver") or decision.get("by") or "unknown")[:100],
        "comment": str(decision.get("comment") or "")[:2000],
    }
    return {"approvals": {pending.get("label", ""): answer}, "pending_approval": None}


def route(state: TicketState) -> str:
    if state.get("closed"):
        return END
    if state.get("pending_approval"):
        return "approval"
    return "coordinate" if state.get("coordinating") else "advance"


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
    graph.add_node("approval", approval)
    graph.add_node("coordinate", coordinate)
    graph.add_edge(START, "advance")
    graph.add_conditional_edges("advance", route, ["advance", "approval", "coordinate", END])
    graph.add_conditional_edges("coordinate", route, ["advance", "coordinate", END])
    graph.add_edge("approval", "advance")
    return graph
