"""What every command group shares: the two consoles and the settings/backends steps with their errors.

A bad setting exits 2 with one line naming the variable; a backend that cannot start exits 1.
"""

from __future__ import annotations

import typer
from rich.console import Console

from shared import migrations
from shared.backends import Backends, export_backends, resolve_backends
from shared.config import Settings, SettingsError, load_settings
from shared.embedded import EmbeddedBackendError

console = Console()
err = Console(stderr=True, soft_wrap=True)


def cli_settings() -> Settings:
    """The platform settings, or exit 2 naming the bad variable."""
    try:
        return load_settings()
    except SettingsError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def start_backends(settings: Settings) -> Backends:
    """The configured servers, or the embedded ones started now; exported for child processes."""
    try:
        with console.status("starting backends ..."):
            backends = resolve_backends(settings)
    except EmbeddedBackendError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    export_backends(backends)
    return backends


def apply_migrations(backends: Backends) -> int:
    """Apply pending migrations, printing each; exit 1 on a migration error."""
    try:
        applied = migrations.upgrade(backends.database_url)
    except migrations.MigrationError as exc:
        err.print(f"[red]migration error:[/red] {exc}")
        raise typer.Exit(1) from None
    for migration in applied:
        console.print(f"applied [bold]{migration.path.name}[/bold]")
    return len(applied)
