"""`devtools run pr-deployment|docs|self-heal`, `status`, `approve`, `reject`, `history`.

Every command talks to the orchestrator over HTTP: the one at DEVTOOLS_ORCHESTRATOR_URL (or
the configured host and port) when it answers /health; otherwise the command starts the
services it needs (registry, agents, orchestrator) for its own duration and stops them after.

Exit codes: 0 done, 1 the run failed (the reason is printed), 2 bad input,
3 the run waits for a person (`devtools approve RUN`), 4 the orchestrator is unusable.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from pydantic import SecretStr
from rich.console import Console
from rich.markdown import Markdown
from rich.markup import escape
from rich.table import Table

from agent_orchestrator.api.client import OrchestratorClient, OrchestratorError
from agent_orchestrator.api.run_progress import follow_run
from agent_orchestrator.cli.console import apply_migrations, cli_settings, console, err, start_backends
from agent_orchestrator.stack import (
    PortInUseError,
    Supervisor,
    available_services,
    choose_ports,
    export_ports,
)

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_WAITING, EXIT_UNAVAILABLE, EXIT_DENIED = 0, 1, 2, 3, 4, 5
# What the orchestrator's refusal means for the exit code: the caller's input, or its token.
BAD_INPUT_STATUSES = (400, 404, 409, 413, 422)
DENIED_STATUSES = (401, 403)
WORKFLOW_AGENTS = {
    "pr_deployment": ["code-review", "cicd", "infrastructure"],
    "parallel_docs": ["documentation"],
    "self_healing": ["infrastructure"],
}
ALL_AGENTS = sorted({a for agents in WORKFLOW_AGENTS.values() for a in agents})

run_app = typer.Typer(help="Run a flagship workflow and follow it live.", no_args_is_help=True)


@contextmanager
def orchestrator(agents: list[str], console: Console) -> Iterator[OrchestratorClient]:
    """A client of a running orchestrator, or of one started here (with `agents`) until the block ends."""
    settings = cli_settings()
    url = (
        os.environ.get("DEVTOOLS_ORCHESTRATOR_URL") or f"http://{settings.host}:{settings.orchestrator_port}"
    )
    token = settings.api_token_value()
    probe = OrchestratorClient(url, token)
    if probe.healthy():
        try:
            yield probe
        finally:
            probe.close()
        return
    probe.close()
    if os.environ.get("DEVTOOLS_ORCHESTRATOR_URL"):
        err.print(f"[red]error:[/red] no orchestrator answers at DEVTOOLS_ORCHESTRATOR_URL={url}")
        raise typer.Exit(EXIT_UNAVAILABLE)
    backends = start_backends(settings)
    apply_migrations(backends)
    if not token:
        # Our own children only: a one-off token that this command passes to them and uses itself.
        token = secrets.token_urlsafe(24)
        settings = settings.model_copy(update={"api_token": SecretStr(token)})
    wanted = {"agent-registry", "orchestrator", *agents}
    specs = [s for s in available_services() if s.name in wanted]
    # Something else on a default port (not an orchestrator: the probe failed) must not stop us.
    try:
        settings, moved = choose_ports(settings, specs, auto=True)
    except PortInUseError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_UNAVAILABLE) from None
    for note in moved:
        console.print(f"[yellow]{note}[/yellow]")
    export_ports(settings, specs)
    url = f"http://{settings.host}:{settings.orchestrator_port}"
    supervisor = Supervisor(settings, backends, specs, settings.data_dir / "logs")
    supervisor.start()
    try:
        with console.status(f"no orchestrator at {url}: starting {', '.join(s.name for s in specs)} ..."):
            ready = supervisor.wait_ready(120)
        if not ready:
            console.print(supervisor.table("devtools services: not ready"))
            err.print(f"[red]error:[/red] services did not become ready; logs in {supervisor.log_dir}")
            raise typer.Exit(EXIT_UNAVAILABLE)
        with OrchestratorClient(url, token) as client:
            yield client
    finally:
        supervisor.stop()


def conclude(client: OrchestratorClient, run: dict[str, Any], console: Console, report: bool = True) -> int:
    """Print the report and the outcome; return the exit code."""
    run_id, status = str(run["id"]), run["status"]
    if status == "interrupted":
        request = (run.get("interrupt") or [{}])[0].get("value") or {}
        reasons = request.get("reasons") or [request.get("question", "a decision is needed")]
        console.print(f"[yellow]run {run_id} waits for a person:[/yellow] {'; '.join(map(str, reasons))}")
        console.print(f"  approve: [bold]devtools approve {run_id}[/bold]   reject: devtools reject {run_id}")
        return EXIT_WAITING
    final = client.final_result(run) if status in ("succeeded", "failed") else None
    if report and final and final.get("report"):
        console.print(Markdown(final["report"]))
    if status == "succeeded":
        console.print(f"[green]run {run_id} succeeded:[/green] {(final or {}).get('reason', '')}")
        return EXIT_OK
    console.print(f"[red]run {run_id} {status}:[/red] {run.get('error') or (final or {}).get('reason')}")
    return EXIT_FAILED


def start_and_follow(workflow: str, data: dict[str, Any]) -> None:
    with orchestrator(WORKFLOW_AGENTS[workflow], console) as client:
        try:
            run = client.create_run(workflow, data)
        except OrchestratorError as exc:
            raise refused(exc) from None
        console.print(f"[bold]{workflow}[/bold] run {run['id']} queued")
        code = conclude(client, follow_run(client, str(run["id"]), console), console)
    raise typer.Exit(code)


@run_app.command("pr-deployment")
def run_pr_deployment(
    repo: Path = typer.Option(..., "--repo", help="Path of the git repository."),
    head: str = typer.Option(..., "--head", help="Branch (or commit) with the change."),
    base: str = typer.Option("main", "--base", help="Branch the change is compared against."),
    env: str = typer.Option("staging", "--env", help="Environment to deploy to."),
) -> None:
    """Review, test, approve (policy or a person), deploy and verify a branch."""
    data = {"repo": str(repo.resolve()), "head": head, "base": base, "environment": env}
    start_and_follow("pr_deployment", data)


@run_app.command("docs")
def run_docs(
    repo: Path = typer.Option(..., "--repo", help="Path of the git repository."),
    out: Path = typer.Option(
        ...,
        "--out",
        help="Folder to write the documents to, relative to the current directory; it must be inside "
        "the repository or the server's output root (DEVTOOLS_OUTPUT_ROOT, by default its data folder).",
    ),
    types: str = typer.Option(
        "api,user_guide,deployment_guide", "--types", help="Comma-separated doc types."
    ),
) -> None:
    """Generate documentation types in parallel and write them to a folder."""
    doc_types = [t.strip() for t in types.split(",") if t.strip()]
    data = {"repo": str(repo.resolve()), "output_dir": str(out.resolve()), "doc_types": doc_types}
    start_and_follow("parallel_docs", data)


@run_app.command("self-heal")
def run_self_heal(
    env: str = typer.Option("staging", "--env", help="Environment to heal."),
    max_attempts: int = typer.Option(3, "--max-attempts", help="Automatic fixes before asking a person."),
) -> None:
    """Detect, diagnose, fix and verify an environment until healthy (or escalate)."""
    start_and_follow("self_healing", {"environment": env, "max_attempts": max_attempts})


def refused(exc: OrchestratorError) -> typer.Exit:
    """Print why the orchestrator refused (it names the field) and the exit code to leave with: 2 for
    bad input, 5 for a missing or wrong token (with the variable to set), 4 when it is unavailable."""
    err.print(f"[red]error:[/red] {escape(str(exc))}")
    if exc.status_code in DENIED_STATUSES:
        err.print("the orchestrator refused the token: set DEVTOOLS_API_TOKEN to the platform's token")
        return typer.Exit(EXIT_DENIED)
    return typer.Exit(EXIT_BAD_INPUT if exc.status_code in BAD_INPUT_STATUSES else EXIT_UNAVAILABLE)


def status(run: str | None = typer.Argument(None, help="A run id; without it, the latest runs.")) -> None:
    """The latest runs, or one run with its report."""
    with orchestrator([], console) as client:
        try:
            if run is None:
                table = Table(title="runs")
                for column in ("run", "workflow", "status", "created", "by", "error"):
                    table.add_column(column)
                for r in client.list_runs(limit=20):
                    error = (r.get("error") or "")[:60]
                    table.add_row(
                        r["id"], r["workflow"], r["status"], r["created_at"][:19], r["created_by"], error
                    )
                console.print(table)
                return
            found = client.get_run(run)
        except OrchestratorError as exc:
            raise refused(exc) from None
        console.print(f"run {found['id']}: [bold]{found['workflow']}[/bold] {found['status']}")
        code = conclude(client, found, console) if found["status"] not in ("queued", "running") else EXIT_OK
    raise typer.Exit(code)


def _decide(run: str, approved: bool, comment: str | None) -> None:
    with orchestrator(ALL_AGENTS, console) as client:
        try:
            client.decide(run, approved, comment)
        except OrchestratorError as exc:
            raise refused(exc) from None
        console.print(f"run {run} {'approved' if approved else 'rejected'}; following it")
        code = conclude(client, follow_run(client, run, console), console)
    raise typer.Exit(code)


def approve(
    run: str = typer.Argument(..., help="The waiting run."),
    comment: str | None = typer.Option(None, "--comment", help="Why (kept with the decision)."),
) -> None:
    """Approve a run that waits for a person; the approver is the API token's holder."""
    _decide(run, True, comment)


def reject(
    run: str = typer.Argument(..., help="The waiting run."),
    comment: str | None = typer.Option(None, "--comment", help="Why (kept with the decision)."),
) -> None:
    """Reject a run that waits for a person; the run ends without doing the step."""
    _decide(run, False, comment)


def cancel(run: str = typer.Argument(..., help="A queued, running or waiting run.")) -> None:
    """Cancel a run: it stops where it is, and the agent serving its current step stops that work
    (its commands are killed, its slot freed)."""
    with orchestrator([], console) as client:
        try:
            found = client.cancel_run(run)
        except OrchestratorError as exc:
            raise refused(exc) from None
    console.print(f"run {found['id']}: [bold]{found['workflow']}[/bold] {found['status']}")


def history(run: str = typer.Argument(..., help="A run id.")) -> None:
    """The run's checkpoints, newest first (ids to replay from)."""
    with orchestrator([], console) as client:
        try:
            entries = client.history(run)
        except OrchestratorError as exc:
            raise refused(exc) from None
    table = Table(title=f"checkpoints of run {run}")
    for column in ("step", "checkpoint", "source", "next", "created"):
        table.add_column(column)
    for entry in entries:
        table.add_row(
            str(entry.get("step")),
            entry["checkpoint_id"],
            str(entry.get("source")),
            ", ".join(entry.get("next") or []) or "-",
            str(entry.get("created_at"))[:19],
        )
    console.print(table)
