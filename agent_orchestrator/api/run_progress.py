"""A run's progress on a terminal, one line per event, as `devtools run` and the demo show it."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from agent_orchestrator.api.client import OrchestratorClient, RunEvent


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
