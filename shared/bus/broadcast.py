"""Broadcast subscriptions: each consumer group on the events stream sees every event once.

A subscription is one logical subscriber (one pattern) per group; several processes subscribing
with the same group share its events. A handler failure leaves the event pending: it is retried
after `subscriber_retry_ms` and dead-lettered after `max_deliveries`, and the listener carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.exceptions import ResponseError

from shared.bus import metrics as bus_metrics
from shared.bus.connection import TRANSIENT_ERRORS, Backoff, BusOptions, dead_letter, ensure_group
from shared.bus.consumer import default_consumer_name
from shared.bus.consumer_io import delivery_counts
from shared.bus.events import InterAgentEvent
from shared.bus.keys import DATA_FIELD, BusKeys

log = logging.getLogger(__name__)

EventHandler = Callable[[InterAgentEvent], Awaitable[None]]

# Where a new subscriber group starts reading: "$" (events emitted from now on), "0" (every event
# still on the stream) or an entry id (the events after it).
NEW_EVENTS = "$"
ALL_RETAINED = "0"
_ENTRY_ID = re.compile(r"\d+(-\d+)?")
# Handled events whose acknowledgement was lost, remembered so a redelivery is not handled twice.
_UNACKED_MEMORY = 10_000


def check_start(start: str) -> str:
    if start != NEW_EVENTS and not _ENTRY_ID.fullmatch(start):
        raise ValueError(f"start: expected '$', '0' or a stream entry id, got {start!r}")
    return start


class Subscription:
    def __init__(
        self,
        client: aioredis.Redis,
        keys: BusKeys,
        options: BusOptions,
        *,
        pattern: str,
        handler: EventHandler,
        group: str,
        start: str = NEW_EVENTS,
        consumer_name: str | None = None,
    ) -> None:
        if not group:
            raise ValueError("group: a subscriber group name is required")
        self.start_id = check_start(start)
        self._client = client
        self._keys = keys
        self._options = options
        self.pattern = pattern
        self.group = group
        self._handler = handler
        self.consumer_name = consumer_name or default_consumer_name(group)
        self._task: asyncio.Task[None] | None = None
        self._unacked: OrderedDict[str, None] = OrderedDict()
        self.delivered = 0
        self.skipped = 0
        self.errors = 0
        self.dead_letters = 0

    async def start(self) -> None:
        # Only a new group starts at start_id; an existing one resumes from its own position.
        await ensure_group(self._client, self._keys.events, self.group, self.start_id)
        self._task = asyncio.create_task(self._run(), name=f"bus-sub-{self.group}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        backoff = Backoff()
        loop = asyncio.get_running_loop()
        next_retry = loop.time() + self._options.subscriber_retry_ms / 1000
        while True:
            try:
                if loop.time() >= next_retry:
                    await self._retry_failed()
                    next_retry = loop.time() + self._options.subscriber_retry_ms / 1000
                block = max(1, min(self._options.block_ms, self._options.subscriber_retry_ms))
                batches = await self._client.xreadgroup(
                    self.group, self.consumer_name, {self._keys.events: ">"}, count=100, block=block
                )
                backoff.reset()
                for _stream, entries in batches:
                    for entry_id, fields in entries:
                        await self._deliver(entry_id, (fields or {}).get(DATA_FIELD), deliveries=1)
            except ResponseError as exc:
                log.warning("bus: subscriber read failed", extra={"group": self.group, "error": str(exc)})
                await backoff.wait()
                with contextlib.suppress(*TRANSIENT_ERRORS, ResponseError):
                    await ensure_group(self._client, self._keys.events, self.group, "0")
            except TRANSIENT_ERRORS:
                bus_metrics.LISTENER_RECONNECTS.labels(kind="subscriber").inc()
                await backoff.wait()

    async def _retry_failed(self) -> None:
        """Take over events left pending by a failed handler (or a dead member of the group)."""
        _cursor, claimed, *_ = await self._client.xautoclaim(
            self._keys.events,
            self.group,
            self.consumer_name,
            self._options.subscriber_retry_ms,
            "0-0",
            count=100,
        )
        claimed = [(i, f) for i, f in claimed if i is not None]
        if not claimed:
            return
        counts = await delivery_counts(self._client, self._keys.events, self.group, [i for i, _ in claimed])
        bus_metrics.REDELIVERIES.labels(kind="event").inc(len(claimed))
        for entry_id, fields in claimed:
            await self._deliver(entry_id, (fields or {}).get(DATA_FIELD), deliveries=counts.get(entry_id, 2))

    async def _dead_letter(self, entry_id: str, raw: str | None, reason: str, error: str) -> None:
        # The events stream is shared by every group: acknowledge, never delete.
        await dead_letter(
            self._client,
            self._keys,
            stream=self._keys.events,
            group=self.group,
            entry_id=entry_id,
            raw=raw,
            reason=reason,
            error=error,
            maxlen=self._options.dead_letter_maxlen,
            delete_entry=False,
        )
        self.dead_letters += 1

    async def _deliver(self, entry_id: str, raw: str | None, deliveries: int) -> None:
        if entry_id in self._unacked:
            # Handled already; only the acknowledgement was lost (Redis went away right after).
            await self._client.xack(self._keys.events, self.group, entry_id)
            del self._unacked[entry_id]
            return
        try:
            if raw is None:
                raise ValueError(f"entry has no '{DATA_FIELD}' field")
            event = InterAgentEvent.from_json(raw)
        except (ValidationError, ValueError) as exc:
            await self._dead_letter(entry_id, raw, "malformed", str(exc))
            return
        if not fnmatch.fnmatchcase(event.event_type.value, self.pattern):
            self.skipped += 1
            await self._client.xack(self._keys.events, self.group, entry_id)
            return
        if deliveries > self._options.max_deliveries:
            await self._dead_letter(
                entry_id,
                raw,
                "max_deliveries",
                f"handler failed {deliveries - 1} times for group {self.group}",
            )
            return
        try:
            await self._handler(event)
        except Exception:
            # Counted and left pending: retried after subscriber_retry_ms; the listener carries on.
            self.errors += 1
            bus_metrics.SUBSCRIBER_ERRORS.labels(group=self.group).inc()
            log.exception(
                "bus: subscriber handler failed", extra={"group": self.group, "event_id": event.event_id}
            )
            return
        self.delivered += 1
        bus_metrics.EVENTS_DELIVERED.labels(group=self.group).inc()
        try:
            await self._client.xack(self._keys.events, self.group, entry_id)
        except TRANSIENT_ERRORS:
            # The entry stays pending and comes back to this consumer (same name) once Redis is
            # back; remembering it keeps the handler from seeing the event twice.
            self._unacked[entry_id] = None
            while len(self._unacked) > _UNACKED_MEMORY:
                self._unacked.popitem(last=False)
            raise
