"""`devtools demo`: the platform's main job, end to end, on whatever backends are configured.

1. check the backends, start the registry, every agent and the orchestrator;
2. create a sample git repository (a small web app and a feature branch);
3. pr_deployment of the branch to a local `staging` (auto-approved: clean review on staging), GET it;
4. parallel_docs of the repository into a folder;
5. stop the deployed app (infrastructure STOP) and let self_healing bring it back, GET it again;
6. file a ticket for the feature branch and follow it through every phase (INITIAL, IMPLEMENTATION,
   INTEGRATION, REFACTORING, DONE), its tasks dispatched to the agents;
7. print a summary, stop the app and every service it started, exit 0 when every step worked.
"""

from __future__ import annotations

import json
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr
from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

from agent_orchestrator.api.client import OrchestratorClient, OrchestratorError
from agent_orchestrator.api.run_progress import TicketProgress, follow_run
from agent_orchestrator.demo.sample_repo import create_sample_repo
from agent_orchestrator.stack import (
    PortInUseError,
    RunningService,
    Supervisor,
    available_services,
    choose_ports,
    export_ports,
)
from agent_orchestrator.stack.health import check_postgres, check_redis
from shared.backends import Backends
from shared.config import Settings
from shared.ports import free_port

ENVIRONMENT = "staging"


@dataclass
class StepResult:
    name: str
    ok: bool
    detail: str
    seconds: float
    run_id: str = "-"


def run_demo(settings: Settings, backends: Backends, console: Console) -> int:
    rows = [check_postgres(backends.database_url), check_redis(backends.redis_url)]
    table = Table(title="devtools demo: platform health")
    for column in ("component", "kind", "status", "version", "latency"):
        table.add_column(column)
    kinds = {"postgresql": backends.embedded_postgres, "redis": backends.embedded_redis}
    for row in rows:
        kind = "embedded" if kinds[row.name] else "configured"
        status = "[green]healthy[/green]" if row.ok else f"[red]down[/red] {row.detail}"
        table.add_row(row.name, kind, status, row.version, f"{row.latency_ms} ms")
    console.print(table)
    if not all(r.ok for r in rows):
        return 1
    token = settings.api_token_value()
    if not token:
        token = secrets.token_urlsafe(24)  # only this demo's own services know it
        settings = settings.model_copy(update={"api_token": SecretStr(token)})
    specs = available_services()
    # A leftover service or another demo on a default port must not break `make demo`: move ours.
    try:
        settings, moved = choose_ports(settings, specs, auto=True)
    except PortInUseError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 1
    for note in moved:
        console.print(f"[yellow]{note}[/yellow]")
    export_ports(settings, specs)
    supervisor = Supervisor(settings, backends, specs, settings.data_dir / "logs")
    started = time.monotonic()
    supervisor.start()
    codes: list[int | None] = []
    try:
        with progress(console, f"starting {len(specs)} services (registry, agents, orchestrator) ..."):
            ready = supervisor.wait_ready(90)
        console.print(supervisor.table("devtools services"))
        if not ready:
            console.print(f"[red]not every service became ready[/red]; logs in {supervisor.log_dir}")
            for svc in supervisor.running:
                if not svc.ready and svc.log_path.exists():
                    tail = svc.log_path.read_text(errors="replace").splitlines()[-5:]
                    console.print(f"{svc.spec.name} ({svc.status}):", *tail, sep="\n  ", markup=False)
            return 1
        steps = _story(settings, supervisor, token, console)
    finally:
        codes = supervisor.stop()
    summary = Table(title=f"devtools demo: the story ({time.monotonic() - started:.0f} s)")
    for column in ("step", "result", "run", "seconds", "detail"):
        summary.add_column(column)
    for step in steps:
        mark = "[green]ok[/green]" if step.ok else "[red]failed[/red]"
        summary.add_row(step.name, mark, step.run_id[:8], f"{step.seconds:.1f}", step.detail)
    stopped = all(code == 0 for code in codes)
    summary.add_row(
        "services stopped", "[green]ok[/green]" if stopped else f"[red]{codes}[/red]", "-", "-", ""
    )
    console.print(summary)
    return 0 if stopped and steps and all(s.ok for s in steps) else 1


@contextmanager
def progress(console: Console, message: str) -> Iterator[None]:
    """A spinner in a terminal; one line where nothing animates (CI logs, `make demo | tee`)."""
    if console.is_terminal:
        with console.status(message):
            yield
    else:
        console.print(message)
        yield


def _service(supervisor: Supervisor, name: str) -> RunningService:
    return next(s for s in supervisor.running if s.spec.name == name)


def _agent_request(
    url: str, token: str, agent: str, request_type: str, payload: dict[str, Any]
) -> dict[str, Any]:
    body = {"source_agent": "demo", "target_agent": agent, "request_type": request_type, "payload": payload}
    headers = {"Authorization": f"Bearer {token}"}
    response = httpx.post(f"{url}/agent-request", json=body, headers=headers, timeout=120)
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


def _question(result: dict[str, Any]) -> str:
    asked = [c for c in result["criteria"] if c["kind"] == "approval"]
    return str(asked[0].get("detail") or asked[0].get("name")) if asked else "approve?"


def _gates_table(gates: list[dict[str, Any]]) -> Table:
    """Each gate evaluation: its criteria with what was measured against what was expected."""
    table = Table(title="the ticket's gates")
    for column in ("phase", "criterion", "passed", "measured", "expected"):
        table.add_column(column)
    for gate in gates:
        for criterion in gate["criteria"]:
            mark = {True: "[green]yes[/green]", False: "[red]no[/red]", None: "[yellow]?[/yellow]"}
            table.add_row(
                gate["phase"],
                criterion["name"],
                mark[criterion["passed"]],
                _short(criterion.get("measured")),
                _short(criterion.get("expected")),
            )
    return table


def _short(value: Any) -> str:
    text = "-" if value is None else json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def _get(url: str) -> str | None:
    try:
        response = httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None
    return f"HTTP {response.status_code} {response.text[:40]!r}"


def _run(
    client: OrchestratorClient, console: Console, title: str, workflow: str, data: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], float]:
    console.rule(f"[bold]{title}[/bold]")
    started = time.monotonic()
    run = client.create_run(workflow, data)
    console.print(f"{workflow} run {run['id']} queued")
    done = follow_run(client, str(run["id"]), console)
    final = client.final_result(done) or {}
    if final.get("report"):
        console.print(Markdown(final["report"]))
    return done, final, time.monotonic() - started


def _story(settings: Settings, supervisor: Supervisor, token: str, console: Console) -> list[StepResult]:
    steps: list[StepResult] = []
    infra_url = _service(supervisor, "infrastructure").url
    folder = settings.data_dir / "demo"
    shutil.rmtree(folder, ignore_errors=True)
    repo = create_sample_repo(folder / "greeting-service", free_port())
    console.print(f"sample repository: {repo.path} (branch {repo.feature}, app port {repo.port})")
    client = OrchestratorClient(_service(supervisor, "orchestrator").url, token, timeout=60)
    try:
        pr_input = {
            "repo": str(repo.path),
            "head": repo.feature,
            "base": repo.base,
            "environment": ENVIRONMENT,
        }
        run, final, seconds = _run(client, console, "1. pull request to staging", "pr_deployment", pr_input)
        served = _get(repo.url + "/")
        ok = run["status"] == "succeeded" and served is not None and served.startswith("HTTP 200")
        steps.append(
            StepResult("pr_deployment", ok, f"{final.get('outcome')}; GET / -> {served}", seconds, run["id"])
        )
        if not ok:
            return steps

        docs_input = {"repo": str(repo.path), "output_dir": str(folder / "docs")}
        run, final, seconds = _run(
            client, console, "2. documentation in parallel", "parallel_docs", docs_input
        )
        files = ", ".join(sorted(p.name for p in (folder / "docs").glob("*.md")))
        steps.append(StepResult("parallel_docs", run["status"] == "succeeded", files, seconds, run["id"]))

        console.rule("[bold]3. the app goes down[/bold]")
        stop = _agent_request(infra_url, token, "infrastructure", "STOP", {"environment": ENVIRONMENT})
        down = _get(repo.url + "/")
        console.print(
            f"infrastructure STOP: {(stop.get('result') or {}).get('message') or stop.get('error')}; "
            f"GET / -> {down or 'refused'}"
        )
        steps.append(
            StepResult("stop the app", down is None, f"GET / -> {down or 'connection refused'}", 0.0)
        )
        heal_input = {"environment": ENVIRONMENT}
        run, final, seconds = _run(client, console, "4. self-healing", "self_healing", heal_input)
        served = _get(repo.url + "/")
        ok = run["status"] == "succeeded" and served is not None and served.startswith("HTTP 200")
        detail = f"{final.get('outcome')} after {final.get('attempts')} attempt(s); GET / -> {served}"
        steps.append(StepResult("self_healing", ok, detail, seconds, run["id"]))

        console.rule("[bold]5. a ticket through every phase[/bold]")
        started = time.monotonic()
        ticket = client.create_ticket(
            "Greet people by name", str(repo.path), head=repo.feature, base=repo.base, labels=["demo"]
        )
        ticket_id = str(ticket["id"])
        console.print(f"ticket {ticket_id} filed: {ticket['title']}")
        progress = TicketProgress(client, ticket_id, console)
        run = progress.follow()
        approvals = 0
        while run["status"] == "interrupted" and client.get_ticket(ticket_id)["waiting_for"] == "approval":
            waiting = client.ticket_gates(ticket_id)[-1]
            console.print(f"[yellow]gate {waiting['phase']} asks:[/yellow] {_question(waiting)}")
            console.print(
                f"  the demo answers as the person would: [bold]devtools approve {ticket_id}[/bold]"
            )
            client.decide(ticket_id, True, comment="approved by the demo")
            approvals += 1
            run = progress.follow()
        final = client.final_result(run) or {}
        if final.get("report"):
            console.print(Markdown(final["report"]))
        ticket = client.get_ticket(str(ticket["id"]))
        tasks = client.list_tasks(ticket=str(ticket["id"]), limit=100)
        done = sum(1 for t in tasks if t["status"] == "succeeded")
        gates = [g for g in client.ticket_gates(ticket_id) if g["verdict"] != "waiting"]
        console.print(_gates_table(gates))
        passed = [g["phase"] for g in gates if g["verdict"] == "passed"]
        detail = (
            f"{ticket['phase']}; {done}/{len(tasks)} tasks succeeded on the agents; "
            f"gates passed: {', '.join(passed)} ({approvals} approval)"
        )
        ok = ticket["phase"] == "DONE" and done == len(tasks) and approvals == 1 and len(passed) == len(gates)
        steps.append(StepResult("ticket", ok, detail, time.monotonic() - started, str(ticket["id"])))
    except (OrchestratorError, httpx.HTTPError) as exc:
        steps.append(StepResult("error", False, str(exc), 0.0))
    finally:
        client.close()
        # The deployed app runs in a session of its own: stop it, every process the demo started goes.
        try:
            _agent_request(infra_url, token, "infrastructure", "STOP", {"environment": ENVIRONMENT})
        except httpx.HTTPError as exc:
            console.print(f"[yellow]could not stop the demo app: {exc}[/yellow]")
    return steps
