"""A run's or a ticket's progress on a terminal, one line per event, as the CLI and the demo show it."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape

from agent_orchestrator.api.client import OrchestratorClient, RunEvent
from agent_orchestrator.tickets import WAITING_FOR_TASKS, waiting_for

TASK_MARKS = {
    "pending": ("…", "dim"),
    "ready": ("○", "dim"),
    "assigned": ("→", "cyan"),
    "running": ("▶", "cyan"),
    "succeeded": ("✔", "green"),
    "failed": ("✘", "red"),
    "timed_out": ("✘", "red"),
    "blocked": ("■", "yellow"),
    "cancelled": ("✘", "yellow"),
}


def print_event(console: Console, event: RunEvent) -> None:
    data = event.data.get("data") or {}
    node = event.data.get("node")
    if event.kind == "node_started":
        console.print(f"  [cyan]▶[/cyan] {node}")
    elif event.kind == "node_finished":
        console.print(f"  [green]✔[/green] {node} [dim]({data.get('seconds', 0):.1f} s)[/dim]")
    elif event.kind == "node_failed":
        console.print(f"  [red]✘[/red] {node}: {data.get('error')}")
    elif event.kind == "node_interrupted":
        console.print(f"  [yellow]⏸[/yellow] {node}: waiting for a person")
    elif event.kind in ("claimed", "resumed", "retry_scheduled", "queued"):
        console.print(f"  [dim]{event.kind}[/dim]")


def follow_run(client: OrchestratorClient, run_id: str, console: Console, after: int = 0) -> dict[str, Any]:
    return client.follow(run_id, on_event=lambda e: print_event(console, e), after=after)


def print_ticket_event(console: Console, event: RunEvent) -> None:
    """One line per phase move, task status change and rest of the ticket's run."""
    data = event.data.get("data") or {}
    if event.kind == "ticket_phase":
        moved = f"{data.get('from')} → {data.get('to')}"
        console.print(
            f"[bold magenta]{escape(moved)}[/bold magenta] [dim]{escape(data.get('reason', ''))}[/dim]"
        )
    elif event.kind.startswith("task_"):
        status = event.kind.removeprefix("task_")
        mark, style = TASK_MARKS.get(status, ("·", "dim"))
        agent = f" [dim]({escape(data['agent'])})[/dim]" if data.get("agent") else ""
        why = data.get("error") or data.get("blocked_reason")
        line = f"  [{style}]{mark}[/{style}] {escape(str(data.get('phase')))} {escape(str(data.get('key')))}"
        console.print(f"{line} {status}{agent}" + (f": {escape(why)}" if why else ""))
    elif event.kind == "interrupted" and waiting_for(data.get("interrupt")) not in (None, WAITING_FOR_TASKS):
        console.print("  [yellow]⏸[/yellow] waiting for a person")
    elif event.kind in ("failed", "cancelled"):
        console.print(
            f"  [red]run {event.kind}[/red] {escape(str(data.get('error') or data.get('by') or ''))}"
        )


class TicketProgress:
    """Prints a ticket's phase moves and task changes until its run rests, and remembers the last
    event shown, so following again (after an approval) goes on where it stopped."""

    def __init__(self, client: OrchestratorClient, ticket_id: str, console: Console) -> None:
        self.client, self.ticket_id, self.console = client, ticket_id, console
        self.last_event = 0

    def follow(self) -> dict[str, Any]:
        return self.client.follow_ticket(self.ticket_id, on_event=self._show, after=self.last_event)

    def _show(self, event: RunEvent) -> None:
        if event.id is not None:
            self.last_event = max(self.last_event, event.id)
        print_ticket_event(self.console, event)


def follow_ticket(client: OrchestratorClient, ticket_id: str, console: Console) -> dict[str, Any]:
    """Print the ticket's phase moves and task changes until its run rests; return the run."""
    return TicketProgress(client, ticket_id, console).follow()
