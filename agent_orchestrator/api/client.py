"""A small synchronous client of the orchestrator's API: runs, tickets and tasks (used by the CLI,
the demo and tests).

`follow()` reads the run's server-sent events until the run rests: finished (the server
ends the stream) or waiting for a person (`interrupted`). `follow_ticket()` does the same for a
ticket's run, except that waiting for its tasks is not resting (agents are at work then).
No polling: the server pushes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from agent_orchestrator.tickets import WAITING_FOR_TASKS, waiting_for

RESTING_EVENTS = frozenset({"interrupted", "succeeded", "failed", "cancelled"})


class OrchestratorError(RuntimeError):
    """The orchestrator refused a request or could not be reached; the message says why."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class RunEvent:
    id: int | None
    kind: str
    data: dict[str, Any]

    @property
    def node(self) -> str | None:
        return self.data.get("node")


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(body, dict) and "error" in body:
        fields = ", ".join(f"{f.get('field')}: {f.get('message')}" for f in body.get("fields") or [])
        return f"{body['error']}" + (f" ({fields})" if fields else "")
    return str(body)[:500]


class OrchestratorClient:
    def __init__(self, base_url: str, token: str | None = None, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OrchestratorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise OrchestratorError(f"orchestrator at {self.base_url} unreachable: {exc}") from None
        if response.status_code >= 400:
            raise OrchestratorError(
                f"{method} {path}: HTTP {response.status_code}: {_error_text(response)}", response.status_code
            )
        return response.json()

    def healthy(self) -> bool:
        try:
            return self._http.get("/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def create_run(self, workflow: str, data: dict[str, Any], priority: int = 0) -> dict[str, Any]:
        body = {"workflow": workflow, "input": data, "priority": priority}
        return self._call("POST", "/runs", json=body)  # type: ignore[no-any-return]

    def get_run(self, run_id: str) -> dict[str, Any]:
        return self._call("GET", f"/runs/{run_id}")  # type: ignore[no-any-return]

    def cancel_run(self, run_id: str) -> dict[str, Any]:
        """Cancel a queued, running or waiting run; the agent serving its current step stops that work."""
        return self._call("POST", f"/runs/{run_id}/cancel")  # type: ignore[no-any-return]

    def list_runs(self, limit: int = 20, status: str | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit, **({"status": status} if status else {})}
        return self._call("GET", "/runs", params=params)  # type: ignore[no-any-return]

    def approvals(self) -> list[dict[str, Any]]:
        return self._call("GET", "/approvals")  # type: ignore[no-any-return]

    def decide(self, run_id: str, approved: bool, comment: str | None = None) -> dict[str, Any]:
        verb = "approve" if approved else "reject"
        return self._call("POST", f"/runs/{run_id}/{verb}", json={"comment": comment})  # type: ignore[no-any-return]

    def history(self, run_id: str, values: bool = False, limit: int = 100) -> list[dict[str, Any]]:
        params = {"values": str(values).lower(), "limit": limit}
        return self._call("GET", f"/runs/{run_id}/history", params=params)  # type: ignore[no-any-return]

    def replay(self, run_id: str, checkpoint_id: str) -> dict[str, Any]:
        body = {"checkpoint_id": checkpoint_id}
        return self._call("POST", f"/runs/{run_id}/replay", json=body)  # type: ignore[no-any-return]

    def _events(self, path: str, what: str, params: dict[str, Any]) -> Iterator[RunEvent]:
        try:
            with self._http.stream("GET", path, params=params, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    raise OrchestratorError(
                        f"GET {path}: HTTP {response.status_code}: {_error_text(response)}",
                        response.status_code,
                    )
                kind, event_id, data = "message", None, ""
                for line in response.iter_lines():
                    if line.startswith("id:"):
                        event_id = int(line[3:].strip())
                    elif line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:"):
                        data += line[5:].strip()
                    elif line == "" and data:
                        yield RunEvent(event_id, kind, json.loads(data))
                        kind, event_id, data = "message", None, ""
        except httpx.HTTPError as exc:
            raise OrchestratorError(f"event stream of {what} broke: {exc}") from None

    def events(self, run_id: str, after: int = 0, follow: bool = True) -> Iterator[RunEvent]:
        """The run's events as they happen (the stream ends when the run has finished)."""
        params = {"after": after, "follow": str(follow).lower()}
        return self._events(f"/runs/{run_id}/events", f"run {run_id}", params)

    def follow(
        self, run_id: str, on_event: Callable[[RunEvent], None] | None = None, after: int = 0
    ) -> dict[str, Any]:
        """Read events until the run finishes or waits for a person; return the run."""
        for event in self.events(run_id, after=after):
            if on_event is not None:
                on_event(event)
            if event.kind == "end" or event.kind in RESTING_EVENTS:
                run = self.get_run(run_id)
                if run["status"] != "running" and run["status"] != "queued":
                    return run
        return self.get_run(run_id)

    def final_result(self, run: dict[str, Any]) -> dict[str, Any] | None:
        """The workflow's `final_result` (with its report): from the result, or the latest checkpoint
        when the run failed after writing its report."""
        result = run.get("result")
        if isinstance(result, dict) and result.get("final_result"):
            return result["final_result"]  # type: ignore[no-any-return]
        history = self.history(str(run["id"]), values=True, limit=1)
        if history:
            values = history[0].get("values") or {}
            final = values.get("final_result")
            return final if isinstance(final, dict) else None
        return None

    # -- tickets and tasks (/api/v1) ----------------------------------------------------------

    def create_ticket(
        self,
        title: str,
        repo: str,
        *,
        head: str | None = None,
        base: str | None = None,
        description: str | None = None,
        priority: str | None = None,
        labels: list[str] | None = None,
        phase_file: str | None = None,
    ) -> dict[str, Any]:
        """File a ticket (its run starts at once); the creator is the token's holder."""
        ref = {"path": repo, "base_branch": base, "head_branch": head}
        body = {
            "title": title,
            "repo": _given(ref),
            "description": description,
            "priority": priority,
            "labels": labels,
            "phase_file": phase_file,
        }
        return self._call("POST", "/api/v1/tickets", json=_given(body))  # type: ignore[no-any-return]

    def list_tickets(self, **filters: Any) -> list[dict[str, Any]]:
        """Filters: status, phase, priority, label, created_by, limit, offset (None: not filtered)."""
        return self._call("GET", "/api/v1/tickets", params=_given(filters))  # type: ignore[no-any-return]

    def get_ticket(self, ticket_id: str) -> dict[str, Any]:
        """The ticket with `phase_tasks` (its current phase's task counts), `run_status`, `waiting_for`."""
        return self._call("GET", f"/api/v1/tickets/{ticket_id}")  # type: ignore[no-any-return]

    def update_ticket(self, ticket_id: str, expected_version: int, **changes: Any) -> dict[str, Any]:
        """Change title, description, priority, labels, head_branch; 409 when the version is stale."""
        body = {**changes, "expected_version": expected_version}
        return self._call("PATCH", f"/api/v1/tickets/{ticket_id}", json=body)  # type: ignore[no-any-return]

    def transition_ticket(
        self, ticket_id: str, to_phase: str, reason: str = "", expected_version: int | None = None
    ) -> dict[str, Any]:
        body = _given({"to_phase": to_phase, "reason": reason, "expected_version": expected_version})
        return self._call("POST", f"/api/v1/tickets/{ticket_id}/transition", json=body)  # type: ignore[no-any-return]

    def cancel_ticket(self, ticket_id: str) -> dict[str, Any]:
        return self._call("POST", f"/api/v1/tickets/{ticket_id}/cancel")  # type: ignore[no-any-return]

    def ticket_history(self, ticket_id: str) -> list[dict[str, Any]]:
        return self._call("GET", f"/api/v1/tickets/{ticket_id}/history")  # type: ignore[no-any-return]

    def ticket_events(self, ticket_id: str, after: int = 0, follow: bool = True) -> Iterator[RunEvent]:
        """The events of the ticket's run as they happen (phase moves, task status changes, progress)."""
        params = {"after": after, "follow": str(follow).lower()}
        return self._events(f"/api/v1/tickets/{ticket_id}/events", f"ticket {ticket_id}", params)

    def follow_ticket(
        self, ticket_id: str, on_event: Callable[[RunEvent], None] | None = None, after: int = 0
    ) -> dict[str, Any]:
        """Read the ticket's events until its run rests: finished, or waiting for a person (a BLOCKED
        ticket). Waiting for its tasks is not resting: agents are at work. Returns the run."""
        ticket = self.get_ticket(ticket_id)
        run_id = str(ticket["run_id"] or ticket["id"])  # a ticket's run has the ticket's id
        for event in self.ticket_events(ticket_id, after=after):
            if on_event is not None:
                on_event(event)
            if event.kind == "end":
                break
            if event.kind == "interrupted" and not _waits_for_tasks(
                (event.data.get("data") or {}).get("interrupt")
            ):
                run = self.get_run(run_id)
                if run["status"] == "interrupted" and not _waits_for_tasks(run.get("interrupt")):
                    return run
        return self.get_run(run_id)

    def ticket_gates(self, ticket_id: str) -> list[dict[str, Any]]:
        """Every evaluation of the ticket's gates, oldest first, with each criterion's measured value."""
        return self._call("GET", f"/api/v1/tickets/{ticket_id}/gates")  # type: ignore[no-any-return]

    def ticket_artifacts(self, ticket_id: str) -> list[dict[str, Any]]:
        return self._call("GET", f"/api/v1/tickets/{ticket_id}/artifacts")  # type: ignore[no-any-return]

    def evaluate_gate(self, ticket_id: str, phase: str) -> dict[str, Any]:
        return self._call("POST", f"/api/v1/tickets/{ticket_id}/gates/{phase}/evaluate")  # type: ignore[no-any-return]

    def list_tasks(
        self,
        ticket: str | None = None,
        statuses: list[str] | None = None,
        phase: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[dict[str, Any]]:
        """Tasks of a ticket, or of every ticket in work; `statuses` are OR-ed."""
        params = _given(
            {"ticket": ticket, "status": statuses or None, "phase": phase, "limit": limit, "offset": offset}
        )
        return self._call("GET", "/api/v1/tasks", params=params)  # type: ignore[no-any-return]

    def get_task(self, task_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/tasks/{task_id}")  # type: ignore[no-any-return]

    def retry_task(self, task_id: str) -> dict[str, Any]:
        return self._call("POST", f"/api/v1/tasks/{task_id}/retry")  # type: ignore[no-any-return]

    def cancel_task(self, task_id: str) -> dict[str, Any]:
        return self._call("POST", f"/api/v1/tasks/{task_id}/cancel")  # type: ignore[no-any-return]

    # -- collaboration -------------------------------------------------------------------------------

    def list_threads(
        self, ticket: str | None = None, run: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        params = _given({"ticket": ticket, "run": run, "limit": limit})
        return self._call("GET", "/api/v1/collaboration/threads", params=params)  # type: ignore[no-any-return]

    def create_thread(
        self, topic: str, ticket: str | None = None, participants: list[dict[str, str]] | None = None
    ) -> dict[str, Any]:
        body = _given({"topic": topic, "ticket_id": ticket, "participants": participants})
        return self._call("POST", "/api/v1/collaboration/threads", json=body)  # type: ignore[no-any-return]

    def create_handoff(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/api/v1/collaboration/handoffs", json=body)  # type: ignore[no-any-return]

    def get_handoff(self, handoff_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/collaboration/handoffs/{handoff_id}")  # type: ignore[no-any-return]

    def get_thread(self, thread_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/collaboration/threads/{thread_id}")  # type: ignore[no-any-return]

    def post_message(
        self, thread_id: str, body: str, kind: str = "comment", reply_to: int | None = None
    ) -> dict[str, Any]:
        data = _given({"body": body, "kind": kind, "reply_to": reply_to})
        path = f"/api/v1/collaboration/threads/{thread_id}/messages"
        return self._call("POST", path, json=data)  # type: ignore[no-any-return]

    def list_handoffs(
        self,
        ticket: str | None = None,
        status: str | None = None,
        person: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        params = _given({"ticket": ticket, "status": status, "person": person, "limit": limit})
        return self._call("GET", "/api/v1/collaboration/handoffs", params=params)  # type: ignore[no-any-return]

    def decide_handoff(self, handoff_id: str, accept: bool, comment: str | None = None) -> dict[str, Any]:
        path = f"/api/v1/collaboration/handoffs/{handoff_id}/{'accept' if accept else 'decline'}"
        return self._call("POST", path, json=_given({"comment": comment}))  # type: ignore[no-any-return]


def _given(values: dict[str, Any]) -> dict[str, Any]:
    """The entries that were given (None means "not given": the server's default applies)."""
    return {k: v for k, v in values.items() if v is not None}


def _waits_for_tasks(interrupt: Any) -> bool:
    return waiting_for(interrupt) == WAITING_FOR_TASKS
