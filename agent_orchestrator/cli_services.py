"""`devtools up` (run the registry and every agent service) and `devtools agents` (the registry's view).

Also the port check both `up` and `demo` make before they start services: `up` serves on the
configured ports (clients rely on them), so a taken one stops it with a one-line error naming the
variable; the demo only needs some free port, so it moves a service whose port is taken.
"""

from __future__ import annotations

import os
import signal
import threading
from contextlib import ExitStack
from types import FrameType

import httpx
import typer
from rich.live import Live
from rich.table import Table

from agent_orchestrator.services import ServiceSpec, Supervisor, available_services
from shared.config import ENV_PREFIX, Settings
from shared.lib.ports import port_is_free, tcp_socket


class PortInUseError(RuntimeError):
    """A service's configured port is taken; the message is one line naming the variable."""


def port_variable(spec: ServiceSpec) -> str:
    return f"{ENV_PREFIX}{spec.port_setting.upper()}"


def choose_ports(settings: Settings, specs: list[ServiceSpec], auto: bool) -> tuple[Settings, list[str]]:
    """Check every service's port is free; return the settings to start them with and what was moved.

    auto=False raises PortInUseError at the first taken port; auto=True gives that service a free
    port from the OS instead. A port configured twice counts as taken the second time. The services
    bind their ports moments later: a race with an unrelated program remains possible and shows up
    as a service that does not become ready.
    """
    claimed: set[int] = set()
    moved: dict[str, int] = {}
    notes: list[str] = []
    with ExitStack() as held:
        for spec in specs:
            port = int(getattr(settings, spec.port_setting))
            if port not in claimed and port_is_free(port, settings.host):
                claimed.add(port)
                continue
            variable = port_variable(spec)
            if not auto:
                why = "is given to another service too" if port in claimed else "is already in use"
                raise PortInUseError(
                    f"port {port} for {spec.name} {why} on {settings.host}; "
                    f"stop what holds it or set {variable} to a free port"
                )
            # Held (without SO_REUSEADDR) until every port is chosen, so the OS never hands one out
            # twice; configured ports are not held, so the OS may offer one of those: ask again.
            free = port
            while free in claimed or free == port:
                picked = held.enter_context(tcp_socket(settings.host))
                picked.bind((settings.host, 0))
                free = int(picked.getsockname()[1])
            claimed.add(free)
            moved[spec.port_setting] = free
            notes.append(f"port {port} ({variable}) is in use: {spec.name} takes {free}")
    return settings.model_copy(update=moved), notes


def export_ports(settings: Settings, specs: list[ServiceSpec]) -> None:
    """Make the services this process starts listen on `settings`' ports (they read DEVTOOLS_*_PORT)."""
    os.environ.update({port_variable(spec): str(getattr(settings, spec.port_setting)) for spec in specs})


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
    specs = available_services()
    unknown = set(only) - {s.name for s in specs}
    if unknown:
        cli.err.print(
            f"[red]error:[/red] --only: unknown service(s) {', '.join(sorted(unknown))}; "
            f"available: {', '.join(s.name for s in specs)}"
        )
        raise typer.Exit(2)
    specs = [s for s in specs if not only or s.name in only]
    try:
        choose_ports(settings, specs, auto=False)
    except PortInUseError as exc:
        cli.err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    backends = cli._backends(settings)
    cli._upgrade(backends)
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
