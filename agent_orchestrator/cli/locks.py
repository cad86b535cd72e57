"""`devtools locks ...`: inspect resource locks and force-release a stuck one."""

from __future__ import annotations

import getpass
from typing import Any

import psycopg
import typer
from rich.table import Table

from agent_orchestrator.cli.console import cli_settings, console, err, start_backends
from shared.db import connect
from shared.locks import argument_error_from

locks_app = typer.Typer(
    help="Resource locks: list holders, inspect one, force-release.", no_args_is_help=True
)

SQL_ACTIVE = (
    "SELECT resource_id, owner, mode, fencing_token, expires_at, remaining_seconds, reason "
    "FROM active_locks_view ORDER BY resource_id, fencing_token"
)
SQL_STATUS = "SELECT * FROM check_lock_status(%s)"
SQL_QUEUE = (
    "SELECT position, owner, mode, priority, waited_seconds, alive FROM wait_queue_view "
    "WHERE resource_id = %s ORDER BY position"
)
SQL_FORCE_RELEASE = "SELECT * FROM force_release_lock(%s, %s, %s)"


def _query(sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    backends = start_backends(cli_settings())
    try:
        with connect(backends.database_url, name="devtools-cli-locks") as conn:
            return conn.execute(sql, params).fetchall()
    except psycopg.Error as exc:
        mapped = argument_error_from(exc)
        err.print(f"[red]error:[/red] {mapped or exc}")
        raise typer.Exit(2 if mapped else 1) from None


@locks_app.command("list")
def list_locks() -> None:
    """Every lease held now: resource, owner, mode, fencing token and time left."""
    rows = _query(SQL_ACTIVE)
    table = Table(title="active locks")
    for column in ("resource", "owner", "mode", "token", "expires at", "left", "reason"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["resource_id"],
            row["owner"],
            row["mode"],
            str(row["fencing_token"]),
            str(row["expires_at"]),
            f"{float(row['remaining_seconds']):.1f}s",
            row["reason"] or "",
        )
    console.print(table)
    console.print(f"{len(rows)} held")


@locks_app.command("status")
def status(resource_id: str = typer.Argument(..., help="e.g. env:staging")) -> None:
    """One resource: its holder(s), token, expiry and the wait queue in service order."""
    row = _query(SQL_STATUS, (resource_id,))[0]
    if row["locked"]:
        console.print(
            f"[bold]{resource_id}[/bold]: held {row['mode']} by {row['holder']} "
            f"(token {row['fencing_token']}) until {row['expires_at']}"
        )
    else:
        console.print(f"[bold]{resource_id}[/bold]: free (last token {row['last_token'] or '-'})")
    queue = _query(SQL_QUEUE, (resource_id,))
    if queue:
        table = Table(title="wait queue")
        for column in ("#", "owner", "mode", "priority", "waited", "alive"):
            table.add_column(column)
        for q in queue:
            table.add_row(
                str(q["position"]),
                q["owner"],
                q["mode"],
                str(q["priority"]),
                f"{float(q['waited_seconds']):.1f}s",
                "yes" if q["alive"] else "no",
            )
        console.print(table)
    console.print(f"{row['waiters']} waiting")


@locks_app.command("force-release")
def force_release(
    resource_id: str = typer.Argument(..., help="e.g. env:staging"),
    reason: str = typer.Option(..., "--reason", help="why (recorded in lock_history)"),
    admin: str = typer.Option(None, "--admin", help="who (default: the current user)"),
) -> None:
    """Drop every lease on a resource (recorded as force_release); waiters are woken."""
    row = _query(SQL_FORCE_RELEASE, (resource_id, admin or getpass.getuser(), reason))[0]
    console.print(row["message"])
