"""Cancelling work that runs in threads: a token the caller sets and the blocking code polls.

Agents run their blocking work (a test run, a build, a deploy step) with `asyncio.to_thread`,
which cancelling the asyncio task cannot stop. The agent's service sets a `CancelToken` in the
context of the request (`asyncio.to_thread` copies context variables into the thread); code that
waits on something slow checks `raise_if_cancelled()` or waits with `wait_or_cancel()`, and
`shared.process.run_command` kills the command's whole process group when the token is set.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from shared.bus.errors import PermanentAgentError


class WorkCancelled(PermanentAgentError):
    """The work was cancelled (its task timed out, was cancelled, or another agent holds it now)."""

    code = "cancelled"


class CancelToken:
    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def cancel(self, reason: str) -> None:
        self.reason = reason
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Block up to `seconds`; True as soon as the token is cancelled."""
        return self._event.wait(seconds)


_current: ContextVar[CancelToken | None] = ContextVar("devtools_cancel_token", default=None)


def current_token() -> CancelToken | None:
    return _current.get()


@contextmanager
def cancel_scope(token: CancelToken) -> Iterator[CancelToken]:
    """Make `token` the current one for this context (and threads started from it with to_thread)."""
    reset = _current.set(token)
    try:
        yield token
    finally:
        _current.reset(reset)


def raise_if_cancelled() -> None:
    token = _current.get()
    if token is not None and token.cancelled:
        raise WorkCancelled(f"cancelled: {token.reason}")
