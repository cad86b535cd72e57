"""`devtools tasks list|show|retry|cancel`: the tasks of tickets over the HTTP API.

Exit codes as for `devtools ticket`: 0 done, 2 bad input or refused (an unknown id, a task that
cannot be retried or cancelled in its status: the reason is printed), 4 the orchestrator is unusable.
"""

from __future__ import annotations

import json

import typer
from rich.markup import escape
from rich.syntax import Syntax

from agent_orchestrator.api.client import OrchestratorError
from agent_orchestrator.cli.console import console
from agent_orchestrator.cli.runs import orchestrator, refused
from agent_orchestrator.cli.tickets import tasks_table
from agent_orchestrator.tasks import TaskStatus

tasks_app = typer.Typer(help="The tasks of tickets: list, inspect, retry, cancel.", no_args_is_help=True)


@tasks_app.command("list")
def list_tasks(
    ticket: str | None = typer.Option(
        None, "--ticket", help="A ticket id; without it, every ticket in work."
    ),
    status: list[TaskStatus] | None = typer.Option(None, "--status", help="A status (repeat for more)."),
    phase: str | None = typer.Option(None, "--phase", help="Only this phase's tasks."),
    limit: int = typer.Option(100, "--limit", help="1..500"),
    offset: int = typer.Option(0, "--offset"),
) -> None:
    """Tasks of a ticket (or of every open or blocked ticket), by status and phase."""
    statuses = [s.value for s in status] if status else None
    with orchestrator([], console) as client:
        try:
            found = client.list_tasks(ticket, statuses, phase, limit, offset)
        except OrchestratorError as exc:
            raise refused(exc) from None
    title = f"tasks of ticket {ticket}" if ticket else "tasks of the tickets in work"
    console.print(tasks_table(title, found, ticket=ticket is None))


@tasks_app.command("show")
def show(task_id: str = typer.Argument(..., metavar="TASK")) -> None:
    """One task: what it asks of which agent, its attempts, its error or result."""
    with orchestrator([], console) as client:
        try:
            t = client.get_task(task_id)
        except OrchestratorError as exc:
            raise refused(exc) from None
    console.print(f"[bold]{escape(t['title'] or t['key'])}[/bold]  task {t['id']}")
    console.print(f"  ticket {t['ticket_id']}, phase {t['phase']}, key {escape(t['key'])}")
    console.print(f"  {t['capability']} / {t['request_type']}, priority {t['priority']}")
    agent = t.get("assigned_agent") or "-"
    console.print(f"  [bold]{t['status']}[/bold], attempt {t['attempt']}/{t['max_attempts']}, agent {agent}")
    for label in ("error", "error_kind", "blocked_reason", "wait_reason"):
        if t.get(label):
            console.print(f"  {label}: {escape(str(t[label]))}")
    console.print(Syntax(json.dumps(t["payload"], indent=2), "json", word_wrap=True))
    if t.get("result") is not None:
        console.print("  result:")
        console.print(Syntax(json.dumps(t["result"], indent=2)[:20000], "json", word_wrap=True))


@tasks_app.command("retry")
def retry(task_id: str = typer.Argument(..., metavar="TASK")) -> None:
    """Give a failed, timed-out, cancelled or blocked task a fresh attempt budget."""
    with orchestrator([], console) as client:
        try:
            t = client.retry_task(task_id)
        except OrchestratorError as exc:
            raise refused(exc) from None
    console.print(f"task {t['id']} ({escape(t['key'])}) is {t['status']} again")


@tasks_app.command("cancel")
def cancel(task_id: str = typer.Argument(..., metavar="TASK")) -> None:
    """Cancel an unfinished task (its agent stops; what depends on it is blocked)."""
    with orchestrator([], console) as client:
        try:
            t = client.cancel_task(task_id)
        except OrchestratorError as exc:
            raise refused(exc) from None
    console.print(f"task {t['id']} ({escape(t['key'])}) {t['status']}")
