"""Errors of the tickets layer, and the one mapping from the stored procedures' SQLSTATEs to them.

Every error is a `TicketError`, so a caller (the HTTP API, the CLI) can catch the family and
pick a status by type: TicketNotFound 404, StaleVersion and TransitionRefused 409,
TicketArgumentError 422, PhaseFileError and VariableError are configuration problems.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from uuid import UUID

import psycopg

# Raised by config/state/070_tickets.sql; see the header of that file.
INVALID_ARGUMENT_SQLSTATE = "DT001"
NOT_FOUND_SQLSTATE = "DT404"
STALE_VERSION_SQLSTATE = "DT409"

_DETAIL_ITEM = re.compile(r"(\w+)=(\S+)")


class TicketError(Exception):
    """Anything the tickets layer refuses."""


class TicketNotFound(TicketError):
    """No ticket has this id."""

    def __init__(self, ticket_id: UUID | str) -> None:
        super().__init__(f"no ticket {ticket_id}")
        self.ticket_id = str(ticket_id)


class StaleVersion(TicketError):
    """The change named a version that is no longer current: re-read the ticket and decide again."""

    def __init__(self, ticket_id: UUID | str, expected_version: int | None, current_version: int) -> None:
        super().__init__(
            f"ticket {ticket_id} was changed meanwhile: expected version {expected_version}, "
            f"current version is {current_version}"
        )
        self.ticket_id = str(ticket_id)
        self.expected_version = expected_version
        self.current_version = current_version


class TransitionRefused(TicketError):
    """The phase file does not allow this move; `allowed` lists the moves it does allow from here."""

    def __init__(self, from_phase: str, to_phase: str, allowed: Sequence[str], reason: str = "") -> None:
        why = reason or "not a declared transition"
        targets = ", ".join(allowed) if allowed else "none (the phase is terminal)"
        super().__init__(
            f"transition {from_phase} -> {to_phase} refused: {why}; allowed from {from_phase}: {targets}"
        )
        self.from_phase = from_phase
        self.to_phase = to_phase
        self.allowed = list(allowed)


class PhaseFileError(TicketError):
    """A phase file is unusable: `file`, the `key` path in it (`phases[2].tasks[1].depends_on`), why."""

    def __init__(self, file: str, key: str, reason: str) -> None:
        super().__init__(f"{file}: {key}: {reason}")
        self.file = file
        self.key = key
        self.reason = reason


class VariableError(TicketError):
    """A `{...}` placeholder cannot be resolved (or parsed); `placeholder` is its text."""

    def __init__(self, placeholder: str, reason: str, *, where: str = "") -> None:
        super().__init__(f"{where}: {placeholder}: {reason}" if where else f"{placeholder}: {reason}")
        self.placeholder = placeholder
        self.reason = reason
        self.where = (
            where  # which template and key held it, e.g. "phase INTEGRATION task review: payload.head"
        )


class TicketArgumentError(TicketError, ValueError):
    """A call got a bad argument; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _detail(exc: psycopg.Error) -> dict[str, str]:
    return dict(_DETAIL_ITEM.findall(exc.diag.message_detail or ""))


def ticket_error_from(exc: psycopg.Error) -> TicketError | None:
    """The TicketError a procedure's RAISE stands for, or None for any other database error."""
    message = exc.diag.message_primary or str(exc)
    if exc.sqlstate == INVALID_ARGUMENT_SQLSTATE:
        return TicketArgumentError(exc.diag.column_name or "argument", message)
    if exc.sqlstate == NOT_FOUND_SQLSTATE:
        return TicketNotFound(_detail(exc).get("ticket_id", "?"))
    if exc.sqlstate == STALE_VERSION_SQLSTATE:
        detail = _detail(exc)
        expected = detail.get("expected_version")
        return StaleVersion(
            detail.get("ticket_id", "?"),
            int(expected) if expected and expected.isdigit() else None,
            int(detail.get("current_version", "0")),
        )
    return None
