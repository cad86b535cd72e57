"""HTTP endpoints of tasks under /api/v1: list (by ticket, status, phase; bounded), read, retry, cancel.
Errors are answered like the tickets router's (`api.tickets.http_error`). Mounted on the orchestrator's app.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query

from agent_orchestrator.api.runs import Writer
from agent_orchestrator.api.tickets import DomainErrorRoute, Tasks, Tickets
from agent_orchestrator.tasks import Task, TaskStatus, TaskStore
from agent_orchestrator.tickets import (
    MAX_LIST_LIMIT,
    MAX_LIST_OFFSET,
    PHASE_NAME_PATTERN,
    TicketQuery,
    TicketStatus,
    TicketStore,
)
from shared.http import error_body

router = APIRouter(prefix="/api/v1", tags=["tasks"], route_class=DomainErrorRoute)

DEFAULT_LIMIT = 100
# Without a ticket, the tasks of the tickets still in work (open or blocked) are listed.
ACTIVE_TICKETS = (TicketStatus.OPEN, TicketStatus.BLOCKED)
RETRYABLE = frozenset({TaskStatus.FAILED, TaskStatus.TIMED_OUT, TaskStatus.CANCELLED, TaskStatus.BLOCKED})


async def _active_tickets_tasks(
    tickets: TicketStore, tasks: TaskStore, phase: str | None, statuses: list[TaskStatus] | None, wanted: int
) -> list[Task]:
    """The tasks of every open or blocked ticket (newest ticket first), until `wanted` are found.

    One query per ticket: fine for the tickets in work at a time; a cross-ticket query in the task
    store would make it one."""
    found: list[Task] = []
    for status in ACTIVE_TICKETS:
        offset = 0
        while len(found) < wanted:
            page = await tickets.list_tickets(TicketQuery(status=status, limit=MAX_LIST_LIMIT, offset=offset))
            for ticket in page:
                found += await tasks.list_tasks(ticket.id, phase=phase, statuses=statuses)
            if len(page) < MAX_LIST_LIMIT or offset + MAX_LIST_LIMIT > MAX_LIST_OFFSET:
                break
            offset += MAX_LIST_LIMIT
    return found


@router.get("/tasks")
async def list_tasks(
    tickets: Tickets,
    tasks: Tasks,
    ticket: Annotated[UUID | None, Query(description="a ticket id; without it, every ticket in work")] = None,
    status: Annotated[list[TaskStatus] | None, Query(max_length=len(TaskStatus))] = None,
    phase: Annotated[str | None, Query(pattern=PHASE_NAME_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = DEFAULT_LIMIT,
    offset: Annotated[int, Query(ge=0, le=MAX_LIST_OFFSET)] = 0,
) -> list[Task]:
    """Tasks of a ticket (creation order), or of every open or blocked ticket; statuses OR-ed."""
    statuses = list(dict.fromkeys(status)) if status else None
    if ticket is not None:
        await tickets.get(ticket)  # an unknown ticket is a 404, not an empty list
        found = await tasks.list_tasks(ticket, phase=phase, statuses=statuses)
    else:
        found = await _active_tickets_tasks(tickets, tasks, phase, statuses, offset + limit)
    return found[offset : offset + limit]


async def _task_or_404(tasks: TaskStore, task_id: UUID) -> Task:
    task = await tasks.get(task_id)
    if task is None:
        raise HTTPException(404, error_body(f"no task {task_id}"))
    return task


@router.get("/tasks/{task_id}")
async def get_task(task_id: UUID, tasks: Tasks) -> Task:
    return await _task_or_404(tasks, task_id)


@router.post("/tasks/{task_id}/retry")
async def retry_task(task_id: UUID, tickets: Tickets, tasks: Tasks, who: Writer) -> Task:
    """A failed, timed-out, cancelled or blocked task gets a fresh budget (ready, or pending on its
    dependencies); what it blocked is unblocked. 409 for other statuses or a closed ticket."""
    task = await _task_or_404(tasks, task_id)
    ticket = await tickets.get(task.ticket_id)
    if ticket.status.closed:
        message = f"ticket {ticket.id} is {ticket.status.value}: its tasks cannot be retried"
        raise HTTPException(409, error_body(message, status=task.status.value))
    if task.status not in RETRYABLE:
        allowed = ", ".join(sorted(s.value for s in RETRYABLE))
        message = f"task {task_id} is {task.status.value}: only a task that is {allowed} can be retried"
        raise HTTPException(409, error_body(message, status=task.status.value))
    return await tasks.retry(task_id, who)


@router.post("/tasks/{task_id}/cancel")
async def cancel_task(task_id: UUID, tasks: Tasks, who: Writer) -> Task:
    """Cancel an unfinished task: an agent working on it stops at its next heartbeat, its dependants
    are blocked. 409 when it has already finished."""
    task = await _task_or_404(tasks, task_id)
    if task.status.final:
        raise HTTPException(
            409, error_body(f"task {task_id} is already {task.status.value}", status=task.status.value)
        )
    return await tasks.cancel(task_id, who)
