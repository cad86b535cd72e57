"""HTTP endpoints of tickets under /api/v1: file one (its `ticket` workflow run starts at once), list,
read, edit with optimistic locking, move between phases, cancel, history, and follow its run's
events (SSE). Mounted on the orchestrator's app (see `api.app`).

The errors of the tickets and tasks layers become HTTP answers in one place, `http_error`, applied
to every route of this router and of the tasks router by `DomainErrorRoute`: not found 404, a stale
version (with `current_version`) or a refused move (with `allowed`) 409, a bad argument 422 naming
the field. Writes need the API token; the actor is always the token's holder, never the body.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import PurePosixPath
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from agent_orchestrator.api.runs import Runtime, Writer, event_stream, resume_point
from agent_orchestrator.runs.models import RunStatus
from agent_orchestrator.runs.queue import RunQueue
from agent_orchestrator.tasks import (
    DependencyError,
    PhaseSummary,
    TaskArgumentError,
    TaskError,
    TaskNotFound,
    TaskStore,
)
from agent_orchestrator.tickets import (
    WAITING_FOR_PERSON,
    PhaseHistoryEntry,
    PhaseTransition,
    RepoRef,
    StaleVersion,
    Ticket,
    TicketArgumentError,
    TicketCreate,
    TicketError,
    TicketNotFound,
    TicketQuery,
    TicketStatus,
    TicketStore,
    TicketUpdate,
    TransitionRefused,
    cancel_ticket,
    open_ticket,
    waiting_for,
)
from agent_orchestrator.workflows.inputs import git_ref, git_repository
from shared.http import BIGINT_MAX, error_body, validation_fields

# -- errors: the one mapping -----------------------------------------------------------------


def http_error(exc: TicketError | TaskError) -> HTTPException:
    """The HTTP answer to an error of the tickets or tasks layer."""
    message = str(exc)
    match exc:
        case TicketNotFound() | TaskNotFound():
            return HTTPException(404, error_body(message))
        case StaleVersion():
            body = error_body(
                message,
                field="expected_version",
                ticket_id=exc.ticket_id,
                expected_version=exc.expected_version,
                current_version=exc.current_version,
            )
            return HTTPException(409, body)
        case TransitionRefused():
            where = {"from_phase": exc.from_phase, "to_phase": exc.to_phase, "allowed": exc.allowed}
            return HTTPException(409, error_body(message, field="to_phase", **where))
        case TicketArgumentError() | TaskArgumentError():
            fields = [{"field": exc.field, "message": message}]
            return HTTPException(422, error_body(message, field=exc.field, fields=fields))
        case DependencyError():
            return HTTPException(409, error_body(message, problem=exc.problem, detail=exc.detail))
    # PhaseFileError, VariableError: the server's configuration (a phase file) is broken.
    return HTTPException(500, error_body(f"server configuration: {message}"))


class DomainErrorRoute(APIRoute):
    """A route whose TicketErrors and TaskErrors are answered by `http_error`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except (TicketError, TaskError) as exc:
                raise http_error(exc) from None

        return guarded


def invalid(fields: list[dict[str, str]]) -> HTTPException:
    """A 422 in the shape of every other validation error (`fields`, each naming one)."""
    names = ", ".join(f["field"] for f in fields)
    return HTTPException(422, error_body(f"invalid request: {names}", fields=fields))


# -- dependencies --------------------------------------------------------------------------------


def tickets_of(request: Request) -> TicketStore:
    """One TicketStore per app (it keeps the loaded phase files), over the runs runtime's pool."""
    pool = request.app.state.runs_runtime.pool
    store: TicketStore | None = getattr(request.app.state, "ticket_store", None)
    if store is None or store.pool is not pool:
        store = TicketStore(pool)
        request.app.state.ticket_store = store
    return store


def tasks_of(request: Request) -> TaskStore:
    return TaskStore(request.app.state.runs_runtime.pool)


Tickets = Annotated[TicketStore, Depends(tickets_of)]
Tasks = Annotated[TaskStore, Depends(tasks_of)]

router = APIRouter(prefix="/api/v1", tags=["tickets"], route_class=DomainErrorRoute)


# -- request bodies: the tickets layer's models without the actor (it comes from the token) -------


def _without(model: type[BaseModel], name: str, drop: str, doc: str) -> type[BaseModel]:
    fields: dict[str, Any] = {n: (f.annotation, f) for n, f in model.model_fields.items() if n != drop}
    return create_model(name, __config__=ConfigDict(extra="forbid"), __doc__=doc, **fields)


NewTicket = _without(TicketCreate, "NewTicket", "created_by", "A ticket to file; its creator is the caller.")
Move = _without(PhaseTransition, "Move", "actor", "A phase move; the actor is the caller.")


class TicketPatch(TicketUpdate):
    """The fields to change, and the version they were decided on (stale: 409, nothing changes)."""

    expected_version: int = Field(ge=1, le=BIGINT_MAX, description="the version the change was read from")


class TicketView(Ticket):
    """A ticket with how its current phase's tasks stand and where its run is."""

    phase_tasks: PhaseSummary
    run_status: RunStatus | None = None
    waiting_for: str | None = Field(None, description="'tasks' or 'person' while the run is interrupted")


def check_repository(repo: RepoRef) -> list[dict[str, str]]:
    """What is wrong with the repository on this host (it runs git): fields naming each problem."""
    if ".." in PurePosixPath(repo.path).parts:
        return [{"field": "repo.path", "message": f"must not contain '..': {repo.path}"}]
    try:
        git_repository(repo.path)
    except ValueError as exc:
        return [{"field": "repo.path", "message": str(exc)}]
    try:
        git_ref(repo.path, repo.base_branch)
    except ValueError as exc:
        return [{"field": "repo.base_branch", "message": str(exc)}]
    return []


# -- endpoints -------------------------------------------------------------------------------------


@router.post("/tickets", status_code=201)
async def create_ticket(body: NewTicket, rt: Runtime, tickets: Tickets, who: Writer) -> Ticket:  # type: ignore[valid-type]
    """File a ticket (created_by: the caller) and start its `ticket` run (the run's id is the ticket's)."""
    create = TicketCreate.model_validate({**body.model_dump(), "created_by": who})  # type: ignore[attr-defined]
    problems = await asyncio.to_thread(check_repository, create.repo)
    if problems:
        raise invalid(problems)
    tickets.machine(create.phase_file)  # an unknown phase file: 422 before anything is stored
    return await open_ticket(rt.queue, tickets, create)


@router.get("/tickets")
async def list_tickets(query: Annotated[TicketQuery, Query()], tickets: Tickets) -> list[Ticket]:
    """Tickets matching every given filter, newest first."""
    return await tickets.list_tickets(query)


@router.get("/tickets/{ticket_id}")
async def get_ticket(ticket_id: UUID, rt: Runtime, tickets: Tickets, tasks: Tasks) -> TicketView:
    ticket = await tickets.get(ticket_id)
    summary = await tasks.phase_summary(ticket.id, ticket.phase)
    run = await rt.queue.get(ticket.run_id) if ticket.run_id is not None else None
    waiting = waiting_for(run.interrupt) if run is not None and run.status is RunStatus.INTERRUPTED else None
    return TicketView(
        **ticket.model_dump(),
        phase_tasks=summary,
        run_status=run.status if run else None,
        waiting_for=waiting,
    )


@router.patch("/tickets/{ticket_id}")
async def update_ticket(ticket_id: UUID, body: TicketPatch, tickets: Tickets, who: Writer) -> Ticket:
    """Change title, description, priority, labels or head_branch, if `expected_version` is current."""
    try:
        given = body.model_dump(exclude_unset=True, exclude={"expected_version"})
        changes = TicketUpdate.model_validate(given)
    except ValidationError as exc:
        raise invalid(validation_fields(exc.errors())) from None
    return await tickets.update(ticket_id, body.expected_version, changes)


async def _resume_if_waiting(queue: RunQueue, ticket: Ticket, who: str) -> None:
    """A person moved a BLOCKED ticket on: its run, waiting for that, goes on from the new phase."""
    if ticket.run_id is None or ticket.status is TicketStatus.BLOCKED:
        return
    run = await queue.get(ticket.run_id)
    if run is None or run.status is not RunStatus.INTERRUPTED:
        return
    if waiting_for(run.interrupt) == WAITING_FOR_PERSON:
        await queue.resume(run.id, {"moved_to": ticket.phase, "by": who}, who)


@router.post("/tickets/{ticket_id}/transition")
async def transition_ticket(
    ticket_id: UUID,
    body: Move,  # type: ignore[valid-type]
    rt: Runtime,
    tickets: Tickets,
    tasks: Tasks,
    who: Writer,
) -> Ticket:
    """Move the ticket to `to_phase` if its phase file allows it (409 with `allowed` otherwise)."""
    move = PhaseTransition(actor=who, **body.model_dump())  # type: ignore[attr-defined]
    ticket = await tickets.transition(ticket_id, move)
    if ticket.status is TicketStatus.CANCELLED:
        # Cancelled by a move: the same as the cancel endpoint (tasks stopped, run ended).
        await tasks.cancel_ticket(ticket.id, who)
        if ticket.run_id is not None:
            await rt.queue.cancel(ticket.run_id, who)
    else:
        await _resume_if_waiting(rt.queue, ticket, who)
    return ticket


@router.post("/tickets/{ticket_id}/cancel")
async def cancel(ticket_id: UUID, rt: Runtime, tickets: Tickets, tasks: Tasks, who: Writer) -> Ticket:
    """CANCELLED: its unfinished tasks are cancelled and its run ends (409 when already closed)."""
    return await cancel_ticket(rt.queue, tickets, tasks, ticket_id, who)


@router.get("/tickets/{ticket_id}/history")
async def ticket_history(ticket_id: UUID, tickets: Tickets) -> list[PhaseHistoryEntry]:
    """Every phase move of the ticket, oldest first."""
    return await tickets.history(ticket_id)


@router.get("/tickets/{ticket_id}/events")
async def ticket_events(
    ticket_id: UUID,
    rt: Runtime,
    tickets: Tickets,
    after: Annotated[int, Query(ge=0, le=BIGINT_MAX)] = 0,
    follow: bool = True,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Server-sent events of the ticket's run (`ticket_phase`, `task_<status>`, node progress, lifecycle),
    in the format of `/runs/{id}/events`; the stream ends when the run has finished."""
    ticket = await tickets.get(ticket_id)
    if ticket.run_id is None:
        raise HTTPException(409, error_body(f"ticket {ticket_id} has no run yet: try again shortly"))
    return event_stream(rt, ticket.run_id, resume_point(after, last_event_id), follow)
