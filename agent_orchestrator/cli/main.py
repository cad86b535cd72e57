"""The `devtools` command: one Typer app, one module per command group."""

from __future__ import annotations

import sys

import typer

from agent_orchestrator.cli.console import apply_migrations, cli_settings, console, err, start_backends
from agent_orchestrator.cli.db import db_app
from agent_orchestrator.cli.locks import locks_app
from agent_orchestrator.cli.runs import approve, cancel, history, reject, run_app, status
from agent_orchestrator.cli.stack import agents, doctor, down, up
from agent_orchestrator.cli.tasks import tasks_app
from agent_orchestrator.cli.threads import handoffs_app, threads_app
from agent_orchestrator.cli.tickets import ticket_app
from shared.logging import configure_logging

app = typer.Typer(help="devtools: multi-agent orchestration for software delivery.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(locks_app, name="locks")
app.add_typer(run_app, name="run")
app.add_typer(ticket_app, name="ticket")
app.add_typer(tasks_app, name="tasks")
app.add_typer(threads_app, name="threads")
app.add_typer(handoffs_app, name="handoffs")
for _command in (up, agents, doctor, down, status, approve, reject, cancel, history):
    app.command()(_command)


@app.callback()
def _root() -> None:
    configure_logging(level="WARNING", fmt="console")


@app.command()
def demo() -> None:
    """The main job: a sample repo deployed by pr_deployment, documented, broken and self-healed."""
    from agent_orchestrator.demo.run import run_demo

    settings = cli_settings()
    kinds = {True: "embedded", False: "configured"}
    console.print(
        f"devtools demo: data in {settings.data_dir}; starting PostgreSQL "
        f"({kinds[settings.embedded_postgres]}) and Redis ({kinds[settings.embedded_redis]}) ..."
    )
    backends = start_backends(settings)
    apply_migrations(backends)
    raise typer.Exit(run_demo(settings, backends, console))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
