"""Errors of the resource lock layer, and the mapping from the stored procedures' SQLSTATEs to them."""

from __future__ import annotations

from datetime import datetime

import psycopg

# Raised by config/state/010_resource_locks.sql for a bad argument; COLUMN carries the argument's name.
LOCK_INVALID_ARGUMENT_SQLSTATE = "DL001"


class ResourceLockError(Exception):
    """The lock could not be obtained (timed out, or wait_timeout=0 and it is held)."""

    def __init__(
        self,
        message: str,
        *,
        resource_id: str,
        holder: str | None = None,
        expires_at: datetime | None = None,
    ) -> None:
        super().__init__(message)
        self.resource_id = resource_id
        self.holder = holder
        self.expires_at = expires_at


class LeaseLostError(ResourceLockError):
    """A held lease could not be renewed (expired, force-released, or taken over): stop using the resource."""


class LockArgumentError(ValueError):
    """A lock call got a bad argument; `argument` names it."""

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(message)
        self.argument = argument


def argument_error_from(exc: psycopg.Error) -> LockArgumentError | None:
    """The LockArgumentError a procedure's RAISE stands for, or None for any other database error."""
    if exc.sqlstate != LOCK_INVALID_ARGUMENT_SQLSTATE:
        return None
    argument = exc.diag.column_name or "argument"
    return LockArgumentError(argument, exc.diag.message_primary or str(exc))
