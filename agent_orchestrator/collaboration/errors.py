"""Errors of collaboration, and the one mapping from the stored procedures' SQLSTATEs to them
(config/state/100_collaboration.sql): NotFound 404, Conflict 409, ArgumentError 422 (naming the field)."""

from __future__ import annotations

import psycopg


class CollaborationError(Exception):
    """Anything collaboration refuses."""

    status_code = 400


class NotFound(CollaborationError):
    status_code = 404


class Conflict(CollaborationError):
    """The thread or handoff is not in a state that allows this (resolved; already decided)."""

    status_code = 409


class ArgumentError(CollaborationError):
    status_code = 422

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


_BY_SQLSTATE: dict[str, type[CollaborationError]] = {"DT404": NotFound, "DT409": Conflict}


def collaboration_error_from(exc: psycopg.Error) -> CollaborationError | None:
    """The CollaborationError a stored procedure meant, or None for any other database error."""
    state = exc.sqlstate or ""
    diag = exc.diag
    message = diag.message_primary or str(exc)
    if state == "DT001":
        return ArgumentError(diag.column_name or "body", message)
    if state in _BY_SQLSTATE:
        return _BY_SQLSTATE[state](message)
    if state == "23503":  # a foreign key: the ticket, task or message named does not exist
        return NotFound(_missing_reference(diag.constraint_name or "", message))
    return None


def _missing_reference(constraint: str, message: str) -> str:
    for column in ("ticket_id", "task_id", "reply_to", "thread_id"):
        if column in constraint:
            return f"unknown {column.removesuffix('_id')}: {message}"
    return message
