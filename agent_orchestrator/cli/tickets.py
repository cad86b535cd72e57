"""`devtools ticket create|list|show|update|history|transition|cancel`: tickets over the HTTP API.

`create` files the ticket (its run starts at once) and, unless `--no-follow`, shows the ticket's
phase moves and task status changes live and ends with the run's Markdown report. Like every
command it talks to the orchestrator at DEVTOOLS_ORCHESTRATOR_URL, or starts the services it needs
for its own duration (to follow a ticket: the registry, the orchestrator and every agent its phases
ask for).

Exit codes, as for `devtools run`: 0 done, 1 the ticket failed, was cancelled or is BLOCKED (the
reason is printed, with the command that moves it on), 2 bad input (the field is named),
3 its run waits for a person otherwise, 4 the orchestrator is unusable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer
from rich.markdown import Markdown
from rich.markup import escape
from rich.table import Table

from agent_orchestrator.api.client import OrchestratorClient, OrchestratorError
from agent_orchestrator.api.run_progress import follow_ticket as follow_ticket_progress
from agent_orchestrator.cli.console import console
from agent_orchestrator.cli.runs import EXIT_FAILED, EXIT_OK, EXIT_WAITING, orchestrator, refused
from agent_orchestrator.tickets import Priority, TicketStatus

# What the default phase file's tasks ask for (the registry and the orchestrator come anyway).
TICKET_AGENTS = ["code-review", "cicd", "documentation", "infrastructure"]
ticket_app = typer.Typer(help="File tickets and follow them through their phases.", no_args_is_help=True)


def tasks_table(title: str, tasks: list[dict[str, Any]], *, ticket: bool = False) -> Table:
    table = Table(title=title)
    for column in (
        "task",
        *(["ticket"] if ticket else []),
        "phase",
        "key",
        "status",
        "agent",
        "attempt",
        "why",
    ):
        table.add_column(column, overflow="fold")
    for t in tasks:
        why = t.get("error") or t.get("blocked_reason") or t.get("wait_reason") or ""
        table.add_row(
            t["id"],
            *([t["ticket_id"]] if ticket else []),
            t["phase"],
            t["key"],
            t["status"],
            t.get("assigned_agent") or "-",
            f"{t['attempt']}/{t['max_attempts']}",
            escape(why[:120]),
        )
    return table


def conclude_ticket(client: OrchestratorClient, ticket_id: str, run: dict[str, Any]) -> int:
    """Print the report (a finished run) or why the ticket rests; return the exit code."""
    ticket = client.get_ticket(ticket_id)
    final = client.final_result(run) if run["status"] in ("succeeded", "failed") else None
    if final and final.get("report"):
        console.print(Markdown(final["report"]))
    status, phase = ticket["status"], ticket["phase"]
    if status == TicketStatus.DONE:
        console.print(f"[green]ticket {ticket_id} is {phase}[/green]")
        return EXIT_OK
    if status == TicketStatus.BLOCKED:
        last = client.ticket_history(ticket_id)[-1]
        console.print(f"[red]ticket {ticket_id} is {phase}:[/red] {escape(last['reason'])}")
        previous = last["from_phase"]
        failed = client.list_tasks(
            ticket_id, phase=previous, statuses=["failed", "timed_out", "cancelled", "blocked"]
        )
        if failed:
            console.print(tasks_table(f"tasks of {previous} that did not succeed", failed))
            console.print("  retry a task: [bold]devtools tasks retry TASK[/bold]")
        console.print(f"  move it on:   [bold]devtools ticket transition {ticket_id} {previous}[/bold]")
        return EXIT_FAILED
    if run["status"] == "interrupted":
        console.print(f"[yellow]ticket {ticket_id} ({phase}) waits for a person[/yellow]")
        return EXIT_WAITING
    why = run.get("error") or (final or {}).get("reason") or f"run {run['status']}"
    console.print(f"[red]ticket {ticket_id} is {phase} ({status}):[/red] {escape(str(why))}")
    return EXIT_FAILED


def follow_ticket(client: OrchestratorClient, ticket_id: str) -> int:
    console.print(f"following ticket {ticket_id} (Ctrl-C stops following; the ticket goes on)")
    try:
        run = follow_ticket_progress(client, ticket_id, console)
        return conclude_ticket(client, ticket_id, run)
    except OrchestratorError as exc:
        raise refused(exc) from None


@ticket_app.command("create")
def create(
    repo: Path = typer.Option(..., "--repo", help="The git repository the ticket works on."),
    title: str = typer.Option(..., "--title", help="What is to be done, in one line."),
    head: str | None = typer.Option(None, "--head", help="Branch holding the change (can be set later)."),
    base: str | None = typer.Option(None, "--base", help="Branch the change builds on (default: main)."),
    description: str | None = typer.Option(None, "--description", help="More about it (Markdown)."),
    priority: Priority | None = typer.Option(None, "--priority", help="How urgent (default: medium)."),
    labels: list[str] | None = typer.Option(None, "--label", help="A label (repeat for more)."),
    phase_file: str | None = typer.Option(
        None, "--phase-file", help="Phases from config/phases/NAME.yaml (default: default)."
    ),
    follow: bool = typer.Option(True, "--follow/--no-follow", help="Show progress until the ticket rests."),
) -> None:
    """File a ticket: its run starts at once; follow its phases and tasks, then print its report."""
    path = os.path.abspath(os.path.expanduser(repo))  # the server needs an absolute path
    with orchestrator(TICKET_AGENTS if follow else [], console) as client:
        try:
            ticket = client.create_ticket(
                title,
                path,
                head=head,
                base=base,
                description=description,
                priority=priority.value if priority else None,
                labels=labels or None,
                phase_file=phase_file,
            )
        except OrchestratorError as exc:
            raise refused(exc) from None
        console.print(f"ticket {ticket['id']} created: {escape(ticket['title'])} ({ticket['phase']})")
        if not follow:
            raise typer.Exit(EXIT_OK)
        code = follow_ticket(client, ticket["id"])
    raise typer.Exit(code)


@ticket_app.command("list")
def list_tickets(
    status: TicketStatus | None = typer.Option(None, "--status"),
    phase: str | None = typer.Option(None, "--phase"),
    priority: Priority | None = typer.Option(None, "--priority"),
    label: str | None = typer.Option(None, "--label"),
    created_by: str | None = typer.Option(None, "--created-by"),
    limit: int = typer.Option(50, "--limit", help="1..500"),
    offset: int = typer.Option(0, "--offset"),
) -> None:
    """Tickets matching every given filter, newest first."""
    filters = {
        "status": status.value if status else None,
        "phase": phase,
        "priority": priority.value if priority else None,
        "label": label,
        "created_by": created_by,
        "limit": limit,
        "offset": offset,
    }
    with orchestrator([], console) as client:
        try:
            found = client.list_tickets(**filters)
        except OrchestratorError as exc:
            raise refused(exc) from None
    table = Table(title="tickets")
    for column in ("ticket", "title", "phase", "status", "priority", "labels", "by", "created", "v"):
        table.add_column(column, overflow="fold")
    for t in found:
        labels = ", ".join(t["labels"])
        row = (t["title"], t["phase"], t["status"], t["priority"], labels, t["created_by"])
        table.add_row(t["id"], *map(escape, row), t["created_at"][:19], str(t["version"]))
    console.print(table)


@ticket_app.command("show")
def show(ticket_id: str = typer.Argument(..., metavar="TICKET")) -> None:
    """The ticket, its tasks, and its report once its run has finished."""
    with orchestrator([], console) as client:
        try:
            t = client.get_ticket(ticket_id)
            tasks = client.list_tasks(ticket_id, limit=500)
            run = client.get_run(t["run_id"]) if t["run_id"] else None
            final = client.final_result(run) if run and run["status"] in ("succeeded", "failed") else None
        except OrchestratorError as exc:
            raise refused(exc) from None
    console.print(f"[bold]{escape(t['title'])}[/bold]  ticket {t['id']} (version {t['version']})")
    console.print(f"  phase [bold]{t['phase']}[/bold] ({t['status']}), priority {t['priority']}")
    head = t["head_branch"] or "(none yet)"
    console.print(f"  repo {escape(t['repo_path'])}  base {escape(t['base_branch'])}  head {escape(head)}")
    console.print(f"  labels {escape(', '.join(t['labels'])) or '-'}  by {escape(t['created_by'])}")
    counts = ", ".join(f"{n} {s}" for s, n in sorted(t["phase_tasks"]["counts"].items())) or "none"
    waiting = f", waiting for {t['waiting_for']}" if t.get("waiting_for") else ""
    console.print(f"  run {t['run_status'] or '-'}{waiting}; tasks of {t['phase']}: {counts}")
    if t["description"]:
        console.print(Markdown(t["description"]))
    if tasks:
        console.print(tasks_table("tasks", tasks))
    if final and final.get("report"):
        console.print(Markdown(final["report"]))


@ticket_app.command("update")
def update(
    ticket_id: str = typer.Argument(..., metavar="TICKET"),
    title: str | None = typer.Option(None, "--title"),
    description: str | None = typer.Option(None, "--description"),
    priority: Priority | None = typer.Option(None, "--priority"),
    labels: list[str] | None = typer.Option(None, "--label", help="The new labels (repeat; replaces all)."),
    head: str | None = typer.Option(None, "--head", help="The branch holding the change."),
    version: int | None = typer.Option(
        None, "--expected-version", help="Refuse the change if the ticket changed since this version."
    ),
) -> None:
    """Change a ticket's title, description, priority, labels or head branch."""
    given = {"title": title, "description": description, "labels": labels, "head_branch": head}
    changes = {k: v for k, v in given.items() if v is not None}
    if priority is not None:
        changes["priority"] = priority.value
    with orchestrator([], console) as client:
        try:
            expected = version if version is not None else client.get_ticket(ticket_id)["version"]
            t = client.update_ticket(ticket_id, expected, **changes)
        except OrchestratorError as exc:
            raise refused(exc) from None
    console.print(f"ticket {t['id']} updated (version {t['version']})")


@ticket_app.command("history")
def history(ticket_id: str = typer.Argument(..., metavar="TICKET")) -> None:
    """Every phase move of the ticket, oldest first."""
    with orchestrator([], console) as client:
        try:
            moves = client.ticket_history(ticket_id)
        except OrchestratorError as exc:
            raise refused(exc) from None
    table = Table(title=f"phases of ticket {ticket_id}")
    for column in ("at", "from", "to", "by", "why"):
        table.add_column(column, overflow="fold")
    for h in moves:
        row = (h["from_phase"] or "-", h["to_phase"], h["actor"], h["reason"])
        table.add_row(h["at"][:19], *map(escape, row))
    console.print(table)


@ticket_app.command("transition")
def transition(
    ticket_id: str = typer.Argument(..., metavar="TICKET"),
    to_phase: str = typer.Argument(..., metavar="PHASE", help="Where to (e.g. back from BLOCKED)."),
    reason: str = typer.Option("", "--reason", help="Why (kept in the history)."),
    version: int | None = typer.Option(
        None, "--expected-version", help="Refuse if the ticket changed since."
    ),
    follow: bool = typer.Option(False, "--follow/--no-follow", help="Then follow it until it rests."),
) -> None:
    """Move a ticket to another phase (a BLOCKED ticket's run goes on from there)."""
    with orchestrator(TICKET_AGENTS if follow else [], console) as client:
        try:
            t = client.transition_ticket(ticket_id, to_phase, reason, version)
        except OrchestratorError as exc:
            raise refused(exc) from None
        console.print(f"ticket {t['id']} is {t['phase']} ({t['status']})")
        code = follow_ticket(client, t["id"]) if follow else EXIT_OK
    raise typer.Exit(code)


@ticket_app.command("cancel")
def cancel(ticket_id: str = typer.Argument(..., metavar="TICKET")) -> None:
    """Cancel a ticket: its unfinished tasks are cancelled and its run ends."""
    with orchestrator([], console) as client:
        try:
            t = client.cancel_ticket(ticket_id)
        except OrchestratorError as exc:
            raise refused(exc) from None
    console.print(f"ticket {t['id']} cancelled")
