"""HTTP endpoints of a ticket's context under /api/v1: read it whole, with the bounded summary its next
phase gets, and change it from the version it was read at. Mounted on the orchestrator's app.

The context holds each finished task's result under its task key, the platform's `_sections` and
`_summary` (agent_orchestrator/tickets/context.py), and whatever a person added (`notes`, a corrected
task result). A person may set or remove only keys shaped like a task key (or `notes`): the reserved
keys are the platform's. Errors are answered by the tickets router's one mapping
(`api.tickets.http_error`, through `DomainErrorRoute`): 404 unknown ticket, 409 stale version with
`current_version` (nothing changes), 422 naming each bad field. Writes need the API token.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any
from uuid import UUID

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from agent_orchestrator.api.runs import Writer
from agent_orchestrator.api.tickets import DomainErrorRoute, Tickets, invalid
from agent_orchestrator.tickets import CONTEXT_KEY_PATTERN, RESERVED_KEYS, SUMMARY_KEY, Ticket
from shared.http import BIGINT_MAX, storable_json

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", tags=["tickets"], route_class=DomainErrorRoute)

MAX_KEYS = 50  # per request, set and remove each
# A person's value is a note or a corrected result, not an artifact; the body is at most 1 MiB anyway.
MAX_VALUE_BYTES = 256 * 1024
_CONTEXT_KEY = re.compile(CONTEXT_KEY_PATTERN)


class TicketContext(BaseModel):
    ticket_id: UUID
    phase: str
    version: int = Field(description="name it as expected_version when changing the context")
    context: dict[str, Any] = Field(
        description="everything stored: task results by task key, notes, _sections (every phase), _summary"
    )
    summary: dict[str, Any] | None = Field(
        description="the bounded summary the next phase gets (context._summary); null before a phase ended"
    )


class ContextChange(BaseModel):
    """Keys to set and keys to remove, applied together if `expected_version` is still current."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    expected_version: int = Field(ge=1, le=BIGINT_MAX, description="the version the change was read from")
    set_: dict[str, Any] = Field(
        default_factory=dict,
        alias="set",
        max_length=MAX_KEYS,
        description="key -> any JSON; keys: a task key ([a-z][a-z0-9_]*) or notes, never a reserved _key",
    )
    remove: list[str] = Field(
        default_factory=list, max_length=MAX_KEYS, description="keys to remove (each must be present)"
    )


def _shown(key: str) -> str:
    # Echoed in the error: bounded, and printable even when it holds a lone surrogate.
    return key[:100].encode("utf-8", "backslashreplace").decode("utf-8")


def _key_problem(key: str) -> str | None:
    if key.startswith("_") or key in RESERVED_KEYS:
        reserved = ", ".join(sorted(RESERVED_KEYS))
        return f"{_shown(key)!r} is reserved: keys starting with '_' ({reserved}) are the platform's"
    if not _CONTEXT_KEY.match(key):
        return (
            f"{_shown(key)!r} is not a context key: give a task key or notes "
            "(lower_case: [a-z][a-z0-9_]*, at most 64 characters)"
        )
    return None


def _value_problem(value: Any) -> str | None:
    try:
        storable_json(value)
    except ValueError as exc:
        return str(exc)
    size = len(json.dumps(value, separators=(",", ":")).encode())
    return f"at most {MAX_VALUE_BYTES} bytes of JSON (got {size})" if size > MAX_VALUE_BYTES else None


def change_problems(change: ContextChange) -> list[dict[str, str]]:
    """Every bad field of the change (`set.<key>`, `remove[<i>]`, `set`), before anything is stored."""
    problems: list[dict[str, str]] = []
    if not change.set_ and not change.remove:
        problems.append({"field": "set", "message": "nothing to change: give keys to set or to remove"})
    for key, value in change.set_.items():
        if problem := _key_problem(key) or _value_problem(value):
            problems.append({"field": f"set.{_shown(key)}", "message": problem})
    for index, key in enumerate(change.remove):
        problem = _key_problem(key)
        if problem is None and key in change.set_:
            problem = f"{key!r} is also in set: a key is either set or removed"
        if problem:
            problems.append({"field": f"remove[{index}]", "message": problem})
    return problems


@router.get("/tickets/{ticket_id}/context")
async def get_context(ticket_id: UUID, tickets: Tickets) -> TicketContext:
    """The ticket's whole context and version, and the bounded summary its next phase gets."""
    ticket = await tickets.get(ticket_id)
    summary = ticket.context.get(SUMMARY_KEY)
    return TicketContext(
        ticket_id=ticket.id,
        phase=ticket.phase,
        version=ticket.version,
        context=ticket.context,
        summary=summary if isinstance(summary, dict) else None,
    )


@router.post("/tickets/{ticket_id}/context")
async def update_context(ticket_id: UUID, body: ContextChange, tickets: Tickets, who: Writer) -> Ticket:
    """Set and remove context keys in one change, if `expected_version` is current (409 with
    `current_version` otherwise, and nothing changes). Later phases read what was set through
    `{context.<key>...}`; `notes` also goes into the next summary."""
    if problems := change_problems(body):
        raise invalid(problems)
    ticket = await tickets.update_context(
        ticket_id, body.set_, body.remove, expected_version=body.expected_version
    )
    # The context keeps no author: the log says who changed which keys.
    changed = {"set": sorted(body.set_), "remove": body.remove, "version": ticket.version}
    log.info("ticket context changed", extra={"ticket_id": str(ticket_id), "by": who, **changed})
    return ticket
