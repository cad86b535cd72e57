"""`devtools db upgrade | status | prune`: migrations, their status, retention (see runs/prune.py)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.table import Table

from agent_orchestrator.cli.console import apply_migrations, cli_settings, console, err, start_backends
from agent_orchestrator.runs.prune import PruneArgumentError, PruneReport, parse_duration, prune_checkpoints
from shared import migrations
from shared.backends import resolve_backends
from shared.config import SettingsError, load_settings
from shared.db import open_pool
from shared.embedded import EmbeddedBackendError

db_app = typer.Typer(help="Database schema: migrations, their status and retention.", no_args_is_help=True)


async def _prune(
    database_url: str, older_than: str, keep_last: int | None, runs_older_than: str | None
) -> PruneReport:
    retention = parse_duration(older_than)
    runs_retention = (
        None if runs_older_than is None else parse_duration(runs_older_than, name="--runs-older-than")
    )
    pool = await open_pool(database_url, min_size=1, max_size=1, name="devtools-prune")
    try:
        return await prune_checkpoints(
            pool, older_than=retention, keep_last=keep_last, runs_older_than=runs_retention
        )
    finally:
        await pool.close()


@db_app.command("prune")
def prune_command(
    older_than: Annotated[
        str, typer.Option("--older-than", help="retention of finished runs' checkpoints, e.g. 7d, 12h")
    ] = "7d",
    keep_last: Annotated[
        int | None, typer.Option("--keep-last", help="keep only the last K checkpoints of every other thread")
    ] = None,
    runs_older_than: Annotated[
        str | None,
        typer.Option(
            "--runs-older-than", help="also delete finished runs themselves past this age, e.g. 90d"
        ),
    ] = None,
) -> None:
    """Delete checkpoints and events of runs finished longer ago than --older-than; trim threads to
    --keep-last; with --runs-older-than, delete finished runs past that age altogether."""
    try:
        settings = load_settings()
        database_url = settings.database_url or resolve_backends(settings).database_url
        report = asyncio.run(_prune(database_url, older_than, keep_last, runs_older_than))
    except (SettingsError, PruneArgumentError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    except EmbeddedBackendError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    console.print(
        f"deleted {report.threads_deleted} expired threads; trimmed {report.threads_trimmed} threads; "
        f"removed {report.checkpoints_deleted} checkpoints, {report.writes_deleted} writes, "
        f"{report.blobs_deleted} blobs, {report.events_deleted} run events; "
        f"deleted {report.runs_deleted} runs"
    )
    if report.skipped_delta_threads:
        console.print(f"skipped (DeltaChannel threads): {', '.join(report.skipped_delta_threads)}")


@db_app.command("upgrade")
def dbapply_migrations() -> None:
    """Apply pending SQL migrations from config/state/ (a no-op when up to date)."""
    backends = start_backends(cli_settings())
    count = apply_migrations(backends)
    console.print(f"database up to date ({count} applied now)")


@db_app.command("status")
def db_status() -> None:
    """List migrations: applied or pending, and whether applied files are unchanged."""
    backends = start_backends(cli_settings())
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
