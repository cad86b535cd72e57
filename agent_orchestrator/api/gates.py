"""HTTP endpoints of a ticket's phase gates under /api/v1: every evaluation with its criteria and
measured values, the artifacts the tasks produced, and an evaluation on demand.

`POST /api/v1/tickets/{id}/gates/{phase}/evaluate` evaluates the gate of the ticket's current round of
`phase` over its tasks as they are now and records the result (evaluated by the caller); it does not
move the ticket: the ticket workflow does that when the phase's tasks are done. Errors are answered by
the tickets router's one mapping: 404 unknown ticket, 409 a phase without a gate or not the ticket's
current one, 422 naming a bad field. Writes need the API token.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, Path, Request

from agent_orchestrator.api.runs import Writer
from agent_orchestrator.api.tickets import DomainErrorRoute, Tasks, Tickets
from agent_orchestrator.tickets import PHASE_NAME_PATTERN, phase_label, template_variables
from agent_orchestrator.tickets.gates import GateArtifact, GateResultRecord, GateStore, evaluate

router = APIRouter(prefix="/api/v1", tags=["tickets"], route_class=DomainErrorRoute)


def gates_of(request: Request) -> GateStore:
    return GateStore(request.app.state.runs_runtime.pool)


Gates = Annotated[GateStore, Depends(gates_of)]


@router.get("/tickets/{ticket_id}/gates")
async def gate_results(ticket_id: UUID, tickets: Tickets, gates: Gates) -> list[GateResultRecord]:
    """Every evaluation of the ticket's gates, oldest first: criteria (passed, measured, expected,
    detail), the verdict (passed, failed, waiting for approval), when and by whom."""
    await tickets.get(ticket_id)
    return await gates.results(ticket_id)


@router.get("/tickets/{ticket_id}/artifacts")
async def artifacts(ticket_id: UUID, tickets: Tickets, gates: Gates) -> list[GateArtifact]:
    """What the ticket's tasks produced: reviews, test reports, deployments, documents, branches, plans."""
    await tickets.get(ticket_id)
    return await gates.artifacts(ticket_id)


@router.post("/tickets/{ticket_id}/gates/{phase}/evaluate")
async def evaluate_gate(
    ticket_id: UUID,
    phase: Annotated[str, Path(pattern=PHASE_NAME_PATTERN, max_length=100)],
    who: Writer,
    request: Request,
    tickets: Tickets,
    tasks: Tasks,
    gates: Gates,
) -> GateResultRecord:
    ticket = await tickets.get(ticket_id)
    spec = tickets.machine(ticket.phase_file).get(phase)
    if spec is None or spec.gate is None:
        raise HTTPException(409, {"error": f"phase {phase} has no gate", "field": "phase"})
    if ticket.phase != phase:
        raise HTTPException(
            409,
            {
                "error": f"ticket is in {ticket.phase}, not {phase}: only the current phase is evaluated",
                "field": "phase",
            },
        )
    label = await phase_label(request.app.state.runs_runtime.pool, tickets, ticket)
    phase_tasks = await tasks.list_tasks(ticket.id, phase=label)
    await gates.record_artifacts(ticket.id, label, phase_tasks)
    result = evaluate(
        spec.gate,
        phase_tasks,
        await gates.artifacts(ticket.id, phase=label),
        variables=template_variables(ticket),
    )
    await gates.record_result(ticket.id, label, result, who)
    return (await gates.results(ticket.id, phase=label))[-1]
