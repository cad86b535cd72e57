"""`devtools threads list|show|post` and `devtools handoffs list|accept|decline`: the conversations
of tickets over the HTTP API. You post and decide as the holder of DEVTOOLS_API_TOKEN.

Exit codes as for `devtools tasks`: 0 done, 2 bad input or refused (an unknown id, a resolved
thread, a handoff already decided: the reason is printed), 4 the orchestrator is unusable.
"""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from agent_orchestrator.api.client import OrchestratorError
from agent_orchestrator.cli.console import console
from agent_orchestrator.cli.runs import orchestrator, refused
from agent_orchestrator.collaboration import HandoffStatus, MessageKind

threads_app = typer.Typer(help="Threads: agents and people talking about a ticket.", no_args_is_help=True)
handoffs_app = typer.Typer(
    help="Handoffs: work handed from one agent or person to another.", no_args_is_help=True
)


@threads_app.command("list")
def list_threads(
    ticket: str | None = typer.Option(None, "--ticket", help="Only this ticket's threads."),
    limit: int = typer.Option(100, "--limit", help="1..500"),
) -> None:
    """Threads, most recently active first."""
    with orchestrator([], console) as client:
        try:
            found = client.list_threads(ticket=ticket, limit=limit)
        except OrchestratorError as exc:
            raise refused(exc) from None
    table = Table(title=f"threads of ticket {ticket}" if ticket else "threads")
    for column in ("thread", "topic", "status", "participants", "updated"):
        table.add_column(column, overflow="fold")
    for t in found:
        people = ", ".join(p["name"] for p in t["participants"])
        table.add_row(t["id"], escape(t["topic"]), t["status"], escape(people), t["updated_at"][:19])
    console.print(table)


@threads_app.command("show")
def show(thread_id: str = typer.Argument(..., metavar="THREAD")) -> None:
    """A thread's messages in order, with their attachments, and its handoffs."""
    with orchestrator([], console) as client:
        try:
            t = client.get_thread(thread_id)
        except OrchestratorError as exc:
            raise refused(exc) from None
    console.print(f"[bold]{escape(t['topic'])}[/bold]  thread {t['id']} ({t['status']})")
    for m in t["messages"]:
        reply = f" (re #{m['reply_to']})" if m.get("reply_to") else ""
        console.print(
            f"#{m['id']} [bold]{escape(m['author'])}[/bold] {m['kind']}{reply}: {escape(m['body'])}"
        )
        for a in m["attachments"]:
            where = a.get("path") or a.get("test") or a.get("label") or ""
            line = f":{a['line']}" if a.get("line") else ""
            console.print(f"    [{a.get('type')}] {escape(str(where))}{line}")
    for h in t["handoffs"]:
        console.print(f"handoff {h['id']}: {h['status']} ({escape(h['reason'][:120])})")


@threads_app.command("post")
def post(
    thread_id: str = typer.Argument(..., metavar="THREAD"),
    body: str = typer.Argument(..., help="What to say."),
    kind: MessageKind = typer.Option(MessageKind.COMMENT, "--kind"),
    reply_to: int | None = typer.Option(None, "--reply-to", help="The message id this answers."),
) -> None:
    """Post in a thread (agents taking part get it over the bus)."""
    with orchestrator([], console) as client:
        try:
            m = client.post_message(thread_id, body, kind.value, reply_to)
        except OrchestratorError as exc:
            raise refused(exc) from None
    console.print(f"posted #{m['id']} in thread {m['thread_id']}")


@handoffs_app.command("list")
def list_handoffs(
    ticket: str | None = typer.Option(None, "--ticket"),
    status: HandoffStatus | None = typer.Option(
        None, "--status", help="e.g. awaiting_person: yours to decide"
    ),
    person: str | None = typer.Option(None, "--person", help="Who decides when no agent takes it."),
) -> None:
    """Handoffs, newest first."""
    with orchestrator([], console) as client:
        try:
            found = client.list_handoffs(ticket, status.value if status else None, person)
        except OrchestratorError as exc:
            raise refused(exc) from None
    table = Table(title="handoffs")
    for column in ("handoff", "status", "to", "offered to", "person", "reason"):
        table.add_column(column, overflow="fold")
    for h in found:
        to = h.get("to_agent") or h.get("to_capability") or "-"
        table.add_row(
            h["id"], h["status"], to, h.get("offered_to") or "-", h["person"], escape(h["reason"][:100])
        )
    console.print(table)


def _decide(handoff_id: str, accept: bool, comment: str | None) -> None:
    with orchestrator([], console) as client:
        try:
            h = client.decide_handoff(handoff_id, accept, comment)
        except OrchestratorError as exc:
            raise refused(exc) from None
    follow = f"; follow-up task {h['follow_up_task_id']}" if h.get("follow_up_task_id") else ""
    console.print(f"handoff {h['id']} {h['status']}{follow}")


@handoffs_app.command("accept")
def accept(
    handoff_id: str = typer.Argument(..., metavar="HANDOFF"),
    comment: str | None = typer.Option(
        None, "--comment", help="Your answer: posted and passed on to the work."
    ),
) -> None:
    """Take a handoff as a person (the work it names resumes with your answer)."""
    _decide(handoff_id, True, comment)


@handoffs_app.command("decline")
def decline(
    handoff_id: str = typer.Argument(..., metavar="HANDOFF"),
    comment: str | None = typer.Option(None, "--comment", help="Why."),
) -> None:
    """Decline a handoff (final: the thread says why)."""
    _decide(handoff_id, False, comment)
