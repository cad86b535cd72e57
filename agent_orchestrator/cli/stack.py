"""`devtools up` (run the registry and every agent service), `agents` (the registry's view),
`doctor` (backends, versions, migrations) and `down` (stop the embedded servers)."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import httpx
import typer
from rich.live import Live
from rich.table import Table

from agent_orchestrator.cli.console import apply_migrations, cli_settings, console, err, start_backends
from agent_orchestrator.stack import PortInUseError, Supervisor, available_services, choose_ports
from agent_orchestrator.stack.health import BackendHealth, check_postgres, check_redis
from shared import migrations
from shared.embedded import embedded_servers


def up(
    timeout: float = typer.Option(
        90.0, help="Seconds to wait for every service to be healthy and registered."
    ),
    refresh: float = typer.Option(1.0, help="Seconds between refreshes of the live table."),
    only: list[str] = typer.Option([], "--only", help="Start only these services (repeatable)."),
) -> None:
    """Start the registry and every agent service, wait until all are ready, show them live; Ctrl-C stops."""
    settings = cli_settings()
    specs = available_services()
    unknown = set(only) - {s.name for s in specs}
    if unknown:
        err.print(
            f"[red]error:[/red] --only: unknown service(s) {', '.join(sorted(unknown))}; "
            f"available: {', '.join(s.name for s in specs)}"
        )
        raise typer.Exit(2)
    specs = [s for s in specs if not only or s.name in only]
    try:
        choose_ports(settings, specs, auto=False)
    except PortInUseError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    backends = start_backends(settings)
    apply_migrations(backends)
    supervisor = Supervisor(settings, backends, specs, settings.data_dir / "logs")
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    supervisor.start()
    if supervisor.generated_token:
        err.print(
            "[yellow]DEVTOOLS_API_TOKEN is not set:[/yellow] generated a one-off token for these services; "
            "set it to register agents from outside this session"
        )
    try:
        with console.status(f"starting {', '.join(s.name for s in specs)} ..."):
            ready = supervisor.wait_ready(timeout)
        if not ready:
            console.print(supervisor.table("devtools services: not ready"))
            err.print(f"[red]error:[/red] not every service became ready; logs in {supervisor.log_dir}")
            raise typer.Exit(1)
        console.print(f"all {len(specs)} services ready; Ctrl-C stops them")
        with Live(supervisor.table(), console=console, refresh_per_second=4) as live:
            while not stop.wait(refresh):
                supervisor.refresh()
                live.update(supervisor.table())
    finally:
        codes = supervisor.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        console.print(f"stopped {len(codes)} services (exit codes {codes})")


def agents(
    status: str | None = typer.Option(
        None, help="Only agents in this status (idle, busy, draining, offline)."
    ),
    capability: str | None = typer.Option(None, help="Only agents offering this capability."),
) -> None:
    """List the agents the registry knows, with status, load and capabilities."""
    settings = cli_settings()
    url = settings.resolved_registry_url
    params = {k: v for k, v in {"status": status, "capability": capability}.items() if v}
    try:
        response = httpx.get(f"{url}/agents", params=params, timeout=5)
    except httpx.HTTPError as exc:
        err.print(f"[red]error:[/red] registry at {url} unreachable ({exc}); is `devtools up` running?")
        raise typer.Exit(1) from None
    if response.status_code != 200:
        err.print(f"[red]error:[/red] registry {response.status_code}: {response.text}")
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
    console.print(table)


def health_table(rows: list[BackendHealth], title: str) -> Table:
    table = Table(title=title)
    for column in ("component", "status", "version", "latency", "where"):
        table.add_column(column)
    for row in rows:
        status = "[green]healthy[/green]" if row.ok else f"[red]down[/red] {row.detail}"
        table.add_row(row.name, status, row.version, f"{row.latency_ms} ms", row.location)
    return table


def doctor() -> None:
    """Which backends are in use, their versions and connectivity, and the migrations applied."""
    settings = cli_settings()
    backends = start_backends(settings)
    rows = [check_postgres(backends.database_url), check_redis(backends.redis_url)]
    console.print(health_table(rows, "backends"))
    console.print(
        f"postgresql: {'embedded' if backends.embedded_postgres else 'configured'}; "
        f"redis: {'embedded' if backends.embedded_redis else 'configured'}; "
        f"data dir: {settings.data_dir.resolve()}"
    )
    console.print(
        f"LLM: {settings.llm}; API token: {'set' if settings.api_token else '[yellow]not set[/yellow]'}"
    )
    ok = all(r.ok for r in rows)
    if rows[0].ok:
        states = migrations.status(backends.database_url)
        applied = sum(1 for s in states if s.applied)
        changed = [s for s in states if s.applied and not s.checksum_ok]
        console.print(f"migrations: {applied}/{len(states)} applied")
        if changed:
            ok = False
            err.print(
                f"[red]changed after apply:[/red] {', '.join(f'{s.version:03d}_{s.name}' for s in changed)}"
            )
    raise typer.Exit(0 if ok else 1)


def down() -> None:
    """Stop the embedded PostgreSQL and Redis of this data folder (their data stays)."""
    settings = cli_settings()
    failed: list[str] = []
    for name, server in zip(("postgresql", "redis"), embedded_servers(settings.data_dir), strict=True):
        if not server.is_running():
            console.print(f"{name}: was not running")
        elif server.stop():
            console.print(f"{name}: stopped")
        else:
            # stop() says False both for "not running" and "still running": only the latter is an error.
            failed.append(name)
            err.print(f"[red]error:[/red] {name} under {settings.data_dir / 'embedded'} is still running")
    raise typer.Exit(1 if failed else 0)
