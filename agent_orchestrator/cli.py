"""The `devtools` command line."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.table import Table

from agent_orchestrator.cli_locks import locks_app
from agent_orchestrator.cli_runs import prune_command
from agent_orchestrator.cli_services import agents, up
from agent_orchestrator.cli_workflows import approve, history, reject, run_app, status
from shared import migrations
from shared.backends import Backends, export_backends, resolve_backends
from shared.config import Settings, SettingsError, load_settings
from shared.embedded import EmbeddedBackendError, embedded_servers
from shared.health import BackendHealth, check_postgres, check_redis
from shared.logging import configure_logging

app = typer.Typer(help="devtools: multi-agent orchestration for software delivery.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema: migrations and their status.", no_args_is_help=True)
app.add_typer(db_app, name="db")
db_app.command("prune")(prune_command)
app.add_typer(locks_app, name="locks")
app.command()(up)
app.command()(agents)
app.add_typer(run_app, name="run")
for _command in (status, approve, reject, history):
    app.command()(_command)
console = Console()
err = Console(stderr=True, soft_wrap=True)


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def _backends(settings: Settings) -> Backends:
    try:
        with console.status("starting backends ..."):
            backends = resolve_backends(settings)
    except EmbeddedBackendError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    export_backends(backends)
    return backends


def _upgrade(backends: Backends) -> int:
    try:
        applied = migrations.upgrade(backends.database_url)
    except migrations.MigrationError as exc:
        err.print(f"[red]migration error:[/red] {exc}")
        raise typer.Exit(1) from None
    for migration in applied:
        console.print(f"applied [bold]{migration.path.name}[/bold]")
    return len(applied)


def _health_table(rows: list[BackendHealth], title: str) -> Table:
    table = Table(title=title)
    for column in ("component", "status", "version", "latency", "where"):
        table.add_column(column)
    for row in rows:
        status = "[green]healthy[/green]" if row.ok else f"[red]down[/red] {row.detail}"
        table.add_row(row.name, status, row.version, f"{row.latency_ms} ms", row.location)
    return table


@app.callback()
def _root() -> None:
    configure_logging(level="WARNING", fmt="console")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending SQL migrations from config/state/ (a no-op when up to date)."""
    backends = _backends(_settings())
    count = _upgrade(backends)
    console.print(f"database up to date ({count} applied now)")


@db_app.command("status")
def db_status() -> None:
    """List migrations: applied or pending, and whether applied files are unchanged."""
    backends = _backends(_settings())
    table = Table(title="schema migrations")
    for column in ("version", "name", "state", "applied at"):
        table.add_column(column)
    pending = 0
    for row in migrations.status(backends.database_url):
        if not row.applied:
            pending += 1
            state = "[yellow]pending[/yellow]"
        else:
            state = "[green]applied[/green]" if row.checksum_ok else "[red]changed since applied[/red]"
        table.add_row(f"{row.version:03d}", row.name, state, str(row.applied_at or "-"))
    console.print(table)
    console.print(f"{pending} pending")


@app.command()
def doctor() -> None:
    """Which backends are in use, their versions and connectivity, and the migrations applied."""
    settings = _settings()
    backends = _backends(settings)
    rows = [check_postgres(backends.database_url), check_redis(backends.redis_url)]
    console.print(_health_table(rows, "backends"))
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


@app.command()
def down() -> None:
    """Stop the embedded PostgreSQL and Redis of this data folder (their data stays)."""
    settings = _settings()
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


@app.command()
def demo() -> None:
    """The main job: a sample repo deployed by pr_deployment, documented, broken and self-healed."""
    from agent_orchestrator.demo import run_demo

    settings = _settings()
    kinds = {True: "embedded", False: "configured"}
    console.print(
        f"devtools demo: data in {settings.data_dir}; starting PostgreSQL "
        f"({kinds[settings.embedded_postgres]}) and Redis ({kinds[settings.embedded_redis]}) ..."
    )
    backends = _backends(settings)
    _upgrade(backends)
    raise typer.Exit(run_demo(settings, backends, console))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
