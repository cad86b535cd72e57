"""The run a graph node is executing in, for helpers that need it (effects, events).

The worker sets it around graph execution; LangGraph runs async nodes as tasks that
copy the context, so nodes see it without threading it through their signatures.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from uuid import UUID

from psycopg_pool import AsyncConnectionPool


@dataclass(frozen=True)
class RunContext:
    run_id: UUID
    workflow: str
    attempt: int
    worker: str
    pool: AsyncConnectionPool


_current: ContextVar[RunContext | None] = ContextVar("devtools_run_context", default=None)


class NotInRun(RuntimeError):
    """A run-scoped helper was called outside a durable run."""


def current_run() -> RunContext:
    ctx = _current.get()
    if ctx is None:
        raise NotInRun("no durable run in this context: call this from a node executed by a run worker")
    return ctx


@contextmanager
def running(ctx: RunContext) -> Iterator[RunContext]:
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)
