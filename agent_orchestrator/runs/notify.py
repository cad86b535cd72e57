"""One LISTEN connection per process, fanned out to in-process subscribers.

Workers subscribe to the run channel (a run was queued, resumed or retried) and
SSE clients to the event channel (a run got a new event). NOTIFY is only a wake-up:
the state is always re-read from the tables, so a notification lost while the
connection was down costs latency, never correctness (after a reconnect every
subscriber is woken once so it re-reads).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict

from psycopg import AsyncConnection, OperationalError, sql

log = logging.getLogger(__name__)

RECONNECT_DELAY_SECONDS = 1.0


class Subscription:
    """Pending notifications of one subscriber; `wait()` returns when one arrived (or on timeout)."""

    def __init__(
        self, listener: Listener, channel: str, key: str | None, event: asyncio.Event | None = None
    ) -> None:
        self._listener = listener
        self.channel = channel
        self.key = key
        # A caller may pass its own event to be woken by several sources at once.
        self._event = event or asyncio.Event()

    def notify(self) -> None:
        self._event.set()

    async def wait(self, seconds: float | None = None) -> bool:
        """True when notified (the flag is reset for the next wait), False after `seconds`."""
        try:
            await asyncio.wait_for(self._event.wait(), seconds)
        except TimeoutError:
            return False
        self._event.clear()
        return True

    def close(self) -> None:
        self._listener._unsubscribe(self)


class Listener:
    def __init__(self, database_url: str, channels: list[str], name: str = "devtools-listen") -> None:
        self.database_url = database_url
        self.channels = channels
        self.name = name
        self._subs: dict[str, set[Subscription]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    def subscribe(
        self, channel: str, key: str | None = None, event: asyncio.Event | None = None
    ) -> Subscription:
        """Wake on every notification of `channel` (key None) or only those whose payload is `key`."""
        if channel not in self.channels:
            raise ValueError(f"channel {channel!r} is not listened to (listening: {self.channels})")
        sub = Subscription(self, channel, key, event)
        self._subs[channel].add(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        self._subs[sub.channel].discard(sub)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"{self.name}-listener")
        await asyncio.wait_for(self._ready.wait(), 30)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _dispatch(self, channel: str, payload: str) -> None:
        for sub in list(self._subs.get(channel, ())):
            if sub.key is None or sub.key == payload:
                sub.notify()

    def _wake_all(self) -> None:
        for subs in self._subs.values():
            for sub in list(subs):
                sub.notify()

    async def _run(self) -> None:
        while True:
            try:
                async with await AsyncConnection.connect(
                    self.database_url, autocommit=True, application_name=self.name
                ) as conn:
                    for channel in self.channels:
                        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    # Anything notified while we were not listening is re-read by the woken subscribers.
                    self._wake_all()
                    self._ready.set()
                    async for note in conn.notifies():
                        self._dispatch(note.channel, note.payload)
            except asyncio.CancelledError:
                raise
            except (OperationalError, OSError) as exc:
                log.warning("listen connection lost; reconnecting", extra={"error": str(exc)})
                await asyncio.sleep(RECONNECT_DELAY_SECONDS)
