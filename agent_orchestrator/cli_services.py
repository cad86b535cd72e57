"""`devtools up` (run the registry and every agent service) and `devtools agents` (the registry's view)."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import httpx
import typer
from rich.live import Live
from rich.table import Table

from agent_orchestrator.services import Supervisor, available_services


def up(
    timeout: float = typer.Option(
        90.0, help="Seconds to wait for every service to be healthy and registered."
    ),
    refresh: float = typer.Option(1.0, help="Seconds between refreshes of the live table."),
    only: list[str] = typer.Option([], "--only", help="Start only these services (repeatable)."),
) -> None:
    """Start the registry and every agent service, wait until all are ready, show them live; Ctrl-C stops."""
    from agent_orchestrator import cli

    settings = cli._settings()
    backends = cli._backends(settings)
    cli._upgrade(backends)
    specs = available_services()
    unknown = set(only) - {s.name for s in specs}
    if unknown:
        cli.err.print(
            f"[red]error:[/red] --only: unknown service(s) {', '.join(sorted(unknown))}; "
            f"available: {', '.join(s.name for s in specs)}"
        )
        raise typer.Exit(2)
    specs = [s for s in specs if not only or s.name in only]
    supervisor = Supervisor(settings, backends, specs, settings.data_dir / "logs")
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    supervisor.start()
    if supervisor.generated_token:
        cli.err.print(
            "[yellow]DEVTOOLS_API_TOKEN is not set:[/yellow] generated a one-off token for these services; "
            "set it to register agents from outside this session"
        )
    try:
        with cli.console.status(f"starting {', '.join(s.name for s in specs)} ..."):
            ready = supervisor.wait_ready(timeout)
        if not ready:
            cli.console.print(supervisor.table("devtools services: not ready"))
            cli.err.print(f"[red]error:[/red] not every service became ready; logs in {supervisor.log_dir}")
            raise typer.Exit(1)
        cli.console.print(f"all {len(specs)} services ready; Ctrl-C stops them")
        with Live(supervisor.table(), console=cli.console, refresh_per_second=4) as live:
            while not stop.wait(refresh):
                supervisor.refresh()
                live.update(supervisor.table())
    finally:
        codes = supervisor.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        cli.console.print(f"stopped {len(codes)} services (exit codes {codes})")


def agents(
    status: str | None = typer.Option(
        None, help="Only agents in this status (idle, busy, draining, offline)."
    ),
    capability: str | None = typer.Option(None, help="Only agents offering this capability."),
) -> None:
    """List the agents the registry knows, with status, load and capabilities."""
    from agent_orchestrator import cli

    settings = cli._settings()
    url = settings.resolved_registry_url
    params = {k: v for k, v in {"status": status, "capability": capability}.items() if v}
    try:
        response = httpx.get(f"{url}/agents", params=params, timeout=5)
    except httpx.HTTPError as exc:
        cli.err.print(f"[red]error:[/red] registry at {url} unreachable ({exc}); is `devtools up` running?")
        raise typer.Exit(1) from None
    if response.status_code != 200:
        cli.err.print(f"[red]error:[/red] registry {response.status_code}: {response.text}")
        raise typer.Exit(1)
    table = Table(title=f"agents at {url}")
    for column in ("agent", "status", "load", "capabilities", "base url", "last heartbeat"):
        table.add_column(column)
    for agent in response.json():
        table.add_row(
            agent["agent_id"],
            agent["status"],
            f"{agent['active_requests']}/{agent['capacity']}",
            ", ".join(c["name"] for c in agent["capabilities"]),
            agent["base_url"],
            agent["last_heartbeat"],
        )
    cli.console.print(table)
