"""One LISTENing connection per lock manager: wakes exactly the waiters a NOTIFY names.

The lock procedures NOTIFY `resource_lock_events` with the queue ids that may proceed now (the head of the
queue, in priority then FIFO order). This connection is the waiters' liveness anchor too: the queue ignores
entries whose listening backend is gone, so a killed process never blocks others. When the connection
breaks, it reconnects and bumps `generation`: waiters re-register their queue entries with the new pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable

import psycopg

from shared.db import connect_async

log = logging.getLogger(__name__)

LOCK_EVENTS_CHANNEL = "resource_lock_events"
_RECONNECT_DELAYS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)


class LockEventListener:
    def __init__(self, conninfo: str, *, name: str = "devtools-locks-listener") -> None:
        self._conninfo = conninfo
        self._name = name
        self._waiters: dict[int, asyncio.Event] = {}
        self._conn: psycopg.AsyncConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._closed = False
        self.pid: int | None = None
        self.generation = 0  # bumped on every (re)connect: queue entries of older generations are stale
        self.on_reconnect: Callable[[], None] | None = None  # called after each reconnect

    async def start(self) -> None:
        await self._connect()
        self._task = asyncio.create_task(self._run(), name=f"{self._name}-notifies")

    async def ready(self) -> tuple[int, int]:
        """The current listening backend's pid and generation, waiting while it reconnects."""
        await self._ready.wait()
        assert self.pid is not None
        return self.pid, self.generation

    def register(self, queue_id: int) -> asyncio.Event:
        return self._waiters.setdefault(queue_id, asyncio.Event())

    def unregister(self, queue_id: int) -> None:
        self._waiters.pop(queue_id, None)

    def wake_all(self) -> None:
        for event in self._waiters.values():
            event.set()

    async def _connect(self) -> None:
        conn = await connect_async(self._conninfo, name=self._name)
        await conn.execute(f"LISTEN {LOCK_EVENTS_CHANNEL}")
        row = await (await conn.execute("SELECT pg_backend_pid() AS pid")).fetchone()
        self._conn = conn
        self.pid = int(row["pid"]) if row else None
        self.generation += 1
        self._ready.set()

    async def _run(self) -> None:
        while not self._closed:
            assert self._conn is not None
            try:
                async for notify in self._conn.notifies():
                    self._dispatch(notify.payload)
            except (psycopg.Error, OSError) as exc:
                if self._closed:
                    return
                log.warning("lock listener connection lost; reconnecting", extra={"error": str(exc)})
            self._ready.clear()
            with contextlib.suppress(psycopg.Error, OSError):
                await self._conn.close()
            await self._reconnect()
            self.wake_all()  # notifications may have been missed: every waiter re-checks
            if self.on_reconnect is not None:
                self.on_reconnect()

    async def _reconnect(self) -> None:
        attempt = 0
        while not self._closed:
            try:
                await self._connect()
                return
            except (psycopg.Error, OSError) as exc:
                delay = _RECONNECT_DELAYS[min(attempt, len(_RECONNECT_DELAYS) - 1)]
                attempt += 1
                log.warning("lock listener reconnect failed", extra={"error": str(exc), "retry_in_s": delay})
                await asyncio.sleep(delay)  # backoff between reconnect attempts, not a poll for lock state

    def _dispatch(self, payload: str) -> None:
        try:
            ids = json.loads(payload).get("w", [])
        except (ValueError, AttributeError):
            log.warning("malformed lock notification ignored", extra={"payload": payload[:200]})
            return
        for queue_id in ids:
            event = self._waiters.get(int(queue_id))
            if event is not None:
                event.set()

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, psycopg.Error, OSError):
                await self._task
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await self._conn.close()
        self.wake_all()
