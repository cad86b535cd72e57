"""Agent errors with a class: what a handler raises, and how any exception becomes a structured error.

A handler that knows why it failed raises `AgentError` (or `RetryableAgentError` /
`PermanentAgentError`) with a stable `code`; the runtime puts `error_code`, `error_class` and
`retry_after_seconds` in the response. Any other exception is classified here, by its type and
never by its message, so a dispatcher decides on retries the same way for every agent:

- retryable: timeouts, lost connections, the database or Redis unreachable right now;
- permanent: invalid input (ValueError, TypeError, KeyError, validation errors), permission refused;
- anything else: retryable with code ``internal`` (bounded by the caller's attempt budget).
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
import redis.exceptions
from pydantic import ValidationError

from shared.bus.events import ErrorClass


class AgentError(Exception):
    """A handler's failure with a stable code and a class; the message is for people."""

    code: str = "agent_error"
    error_class: ErrorClass = ErrorClass.PERMANENT

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        error_class: ErrorClass | None = None,
        retry_after_seconds: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code or type(self).code
        self.error_class = error_class or type(self).error_class
        self.retry_after_seconds = retry_after_seconds


class RetryableAgentError(AgentError):
    """Worth trying again later (the agent is overloaded, a service it needs is down, a rate limit)."""

    code = "transient"
    error_class = ErrorClass.RETRYABLE


class PermanentAgentError(AgentError):
    """Trying again cannot help (bad input, refused permission, a broken repository under work)."""

    code = "permanent"
    error_class = ErrorClass.PERMANENT


@dataclass(frozen=True)
class ErrorInfo:
    code: str
    error_class: ErrorClass
    retry_after_seconds: float | None = None


_RETRYABLE: tuple[type[BaseException], ...] = (
    TimeoutError,
    ConnectionError,
    psycopg.OperationalError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)
_PERMANENT: tuple[type[BaseException], ...] = (ValueError, TypeError, KeyError, ValidationError)


def classify(exc: BaseException) -> ErrorInfo:
    """The structured error of an exception raised by a handler (by type, never by message)."""
    if isinstance(exc, AgentError):
        return ErrorInfo(exc.code, exc.error_class, exc.retry_after_seconds)
    if isinstance(exc, PermissionError):
        return ErrorInfo("permission_denied", ErrorClass.PERMANENT)
    if isinstance(exc, TimeoutError):
        return ErrorInfo("timeout", ErrorClass.RETRYABLE)
    if isinstance(exc, _RETRYABLE):
        return ErrorInfo("unavailable", ErrorClass.RETRYABLE)
    if isinstance(exc, _PERMANENT):
        # ValidationError is a ValueError: checked after the retryable types on purpose.
        return ErrorInfo("invalid_input", ErrorClass.PERMANENT)
    return ErrorInfo("internal", ErrorClass.RETRYABLE)
