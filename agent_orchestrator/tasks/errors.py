"""Errors of the task store, and the one mapping from the stored procedures' SQLSTATEs to them."""

from __future__ import annotations

import psycopg

# Raised by config/state/080_tasks.sql.
INVALID_ARGUMENT_SQLSTATE = "DK001"  # COLUMN names the argument
DEPENDENCY_SQLSTATE = "DK002"  # CONSTRAINT says which problem, DETAIL names the dependency or cycle
UNKNOWN_DEPENDENCY = "unknown_dependency"
DEPENDENCY_CYCLE = "dependency_cycle"
DEPENDENCY_UNFINISHED = "dependency_unfinished"
NOT_FOUND_SQLSTATE = "DK404"


class TaskError(Exception):
    """Base of every error the task store raises on purpose."""


class TaskArgumentError(TaskError, ValueError):
    """A bad argument or task spec field; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class DependencyError(TaskError):
    """The dependencies are not a DAG within the ticket: an unknown dependency (`unknown` names it),
    a cycle (`cycle` lists it as a path that ends where it starts), or a retry whose dependency still
    failed. `problem` is one of UNKNOWN_DEPENDENCY, DEPENDENCY_CYCLE, DEPENDENCY_UNFINISHED; `detail`
    is what the database named, when it raised it (the cycle check there names the keys involved)."""

    def __init__(
        self,
        message: str,
        *,
        problem: str,
        task_key: str | None = None,
        unknown: str | None = None,
        cycle: list[str] | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.problem = problem
        self.task_key = task_key
        self.unknown = unknown
        self.cycle = cycle
        self.detail = detail


class TaskNotFound(TaskError, LookupError):
    """No such task or ticket."""


def task_error_from(exc: psycopg.Error) -> TaskError | None:
    """The TaskError a procedure's RAISE stands for, or None for any other database error."""
    message = exc.diag.message_primary or str(exc)
    if exc.sqlstate == INVALID_ARGUMENT_SQLSTATE:
        return TaskArgumentError(exc.diag.column_name or "argument", message)
    if exc.sqlstate == DEPENDENCY_SQLSTATE:
        # Which problem is a structured field (CONSTRAINT), never read from the message text.
        problem = exc.diag.constraint_name or DEPENDENCY_CYCLE
        detail = exc.diag.message_detail
        unknown = detail if problem == UNKNOWN_DEPENDENCY else None
        return DependencyError(message, problem=problem, unknown=unknown, detail=detail)
    if exc.sqlstate == NOT_FOUND_SQLSTATE:
        return TaskNotFound(message)
    return None
