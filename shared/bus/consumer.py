"""The serving side: replicas of an agent share its request streams through one consumer group.

Entries are claimed most urgent lane first and never beyond the free slots, held under a lease
(renewed while this consumer is alive), executed with bounded concurrency, and acknowledged only
together with the published response.
A consumer that dies stops renewing; its entries go idle and another replica reclaims them.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.exceptions import ResponseError

from shared.bus import metrics as bus_metrics
from shared.bus.connection import (
    TRANSIENT_ERRORS,
    Backoff,
    BusOptions,
    BusUnavailable,
    ensure_group,
)
from shared.bus.consumer_io import (
    LEASE_LUA,
    PRIORITY_READ_LUA,
    batches_of,
    delivery_counts,
    parse_priority_read,
)
from shared.bus.events import AgentRequestEvent, AgentResponseEvent, ResponseStatus
from shared.bus.execute import RequestHandler, run_handler
from shared.bus.keys import (
    DATA_FIELD,
    REQUEST_GROUP,
    BusKeys,
    agent_target,
    capability_target,
    lanes,
    priority_of_stream,
    priority_rank,
)
from shared.bus.rejects import Rejecter
from shared.bus.replies import ReplyPublisher, remembered_response

log = logging.getLogger(__name__)


@dataclass(order=True)
class _Held:
    rank: int
    seq: int
    stream: str = field(compare=False)
    entry_id: str = field(compare=False)
    raw: str | None = field(compare=False)
    deliveries: int = field(compare=False, default=1)


def default_consumer_name(agent_id: str) -> str:
    return f"{agent_id}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class RequestConsumer:
    """Serves one agent's requests (by id and by capability) until stopped."""

    def __init__(
        self,
        client: aioredis.Redis,
        keys: BusKeys,
        options: BusOptions,
        publisher: ReplyPublisher,
        *,
        agent_id: str,
        capabilities: list[str],
        handler: RequestHandler,
        concurrency: int,
        idempotent: bool,
        consumer_name: str | None,
        on_full: Callable[[bool], None] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency: must be at least 1")
        self._client = client
        self._keys = keys
        self._options = options
        self._publisher = publisher
        self.agent_id = agent_id
        self._active_gauge = bus_metrics.HANDLERS_ACTIVE.labels(agent=agent_id)
        self.capabilities = list(capabilities)
        self._handler = handler
        self.concurrency = concurrency
        self.idempotent = idempotent
        self.consumer_name = consumer_name or default_consumer_name(agent_id)
        self._on_full = on_full
        self._read_script = client.register_script(PRIORITY_READ_LUA)
        self._lease_script = client.register_script(LEASE_LUA)
        self._rejecter = Rejecter(client, keys, options, publisher, agent_id)
        targets = [agent_target(agent_id)] + [capability_target(c) for c in self.capabilities]
        self._presence_keys = [keys.presence(t) for t in targets]
        self._lanes = lanes(keys, targets)
        self._streams = [s for lane in self._lanes for s in lane]
        self._per_lane = len(self._lanes[0])
        self._reads = 0
        # Leases are renewed, and idle entries of dead replicas reclaimed, this often.
        self._lease_interval = max(options.claim_idle_ms / 3000, 0.05)
        self._queue: list[_Held] = []
        self._held: dict[tuple[str, str], _Held] = {}
        self._seq = itertools.count()
        self._tasks: set[asyncio.Task[None]] = set()
        self._running: dict[str, asyncio.Future[AgentResponseEvent]] = {}
        self._room = asyncio.Event()
        self._room.set()
        self._was_full = False
        self._stopping = False
        self._abandoned = False
        self._loops: list[asyncio.Task[None]] = []
        self.active = 0
        self.handled = 0
        self.redeliveries = 0
        self.dead_letters = 0

    @property
    def is_full(self) -> bool:
        """True while every slot runs a request: the runtime reports the agent as busy."""
        return self.active >= self.concurrency

    @property
    def streams(self) -> list[str]:
        return list(self._streams)

    async def start(self) -> None:
        await self._ensure_groups()
        await self._announce()
        self._loops = [
            asyncio.create_task(self._read_loop(), name=f"bus-read-{self.consumer_name}"),
            asyncio.create_task(self._lease_loop(), name=f"bus-lease-{self.consumer_name}"),
        ]

    async def stop(self, drain: bool = True) -> None:
        """Stop taking work; with drain, finish what is held first, otherwise leave it to other replicas."""
        self._stopping = True
        reader = self._loops[0] if self._loops else None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        if drain:
            while self._tasks or self._queue:
                self._dispatch()
                if self._tasks:
                    await asyncio.wait(set(self._tasks))
        else:
            self._abandoned = True  # queued entries stay pending for other replicas
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for loop in self._loops[1:]:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        self._loops = []

    async def _ensure_groups(self) -> None:
        for stream in self._streams:
            await ensure_group(self._client, stream, REQUEST_GROUP, "0")

    async def _announce(self) -> None:
        """Tell requesters that a consumer of each target is alive, for as long as an entry it held would
        stay its own (claim_idle_ms); refreshed three times in that span by the lease loop."""
        pipe = self._client.pipeline(transaction=False)
        for key in self._presence_keys:
            pipe.set(key, self.consumer_name, px=self._options.claim_idle_ms)
        await pipe.execute()

    # -- reading -------------------------------------------------------------------------------

    def _free(self) -> int:
        return self.concurrency - self.active - len(self._queue)

    def _update_room(self) -> None:
        if self._free() > 0:
            self._room.set()
        else:
            self._room.clear()
        full = self.is_full
        if full != self._was_full:
            self._was_full = full
            if self._on_full is not None:
                self._on_full(full)

    async def _read_loop(self) -> None:
        """Claim work only up to the free slots, so that no replica hoards what another could run.

        Reading: PRIORITY_READ_LUA claims at most `room` entries, most urgent lane first. When it
        leaves every stream drained, the loop waits for the next arrival. XREADGROUP's COUNT is per
        stream, so a blocking XREADGROUP over all S streams can claim COUNT x S entries; it is used
        only when every stream may return room // S >= 1 entries without exceeding the room (many
        slots: one round trip per request, and whatever it claims starts at once). With fewer free
        slots than streams the loop blocks on XREAD (no group: it claims nothing) for an entry newer
        than the tails the Lua read saw, then claims by priority with a new bounded read; waking all
        idle replicas for one request is the price. Reclaiming runs in this loop too: one reader owns
        the free-slot count, so reads and reclaims can never both fill the same slots.
        """
        backoff = Backoff()
        loop = asyncio.get_running_loop()
        next_reclaim = loop.time() + self._lease_interval
        # drained: the last read found every stream empty, so the next one may block right away;
        # tails: the last entry id of each stream at that read (None when unknown).
        drained = False
        tails: list[str] | None = None
        while not self._stopping:
            try:
                await self._room.wait()
                if loop.time() >= next_reclaim:
                    await self._reclaim()
                    next_reclaim = loop.time() + self._lease_interval
                room = self._free()
                if room <= 0:
                    self._update_room()
                    continue
                block = max(1, min(self._options.block_ms, int((next_reclaim - loop.time()) * 1000)))
                if not drained:
                    raw = await self._read_script(
                        keys=self._streams,
                        args=[REQUEST_GROUP, self.consumer_name, room, self._per_lane, self._rotation()],
                    )
                    found, tails = parse_priority_read(raw)
                    drained = tails is not None
                    self._accept([(s, i, f.get(DATA_FIELD) if f else None, 1) for s, i, f in found])
                elif (per_stream := room // len(self._streams)) > 0:
                    batches = await self._client.xreadgroup(
                        REQUEST_GROUP,
                        self.consumer_name,
                        dict.fromkeys(self._streams, ">"),
                        count=per_stream,
                        block=block,
                    )
                    drained = all(len(items) < per_stream for _s, items in batches)
                    tails = None
                    self._accept(
                        [(s, i, f.get(DATA_FIELD) if f else None, 1) for s, i, f in batches_of(batches)]
                    )
                else:
                    if tails is not None:  # fewer slots than streams: wait without claiming
                        await self._client.xread(
                            dict(zip(self._streams, tails, strict=True)), count=1, block=block
                        )
                    drained = False  # then claim by priority (or learn the tails first)
                backoff.reset()
            except ResponseError as exc:
                # NOGROUP: Redis restarted without persistence (or the stream was deleted).
                log.warning("bus: consumer read failed", extra={"error": str(exc), "agent": self.agent_id})
                drained = False
                await backoff.wait()
                with contextlib.suppress(*TRANSIENT_ERRORS, ResponseError):
                    await self._ensure_groups()
                    await self._announce()
            except TRANSIENT_ERRORS:
                bus_metrics.LISTENER_RECONNECTS.labels(kind="consumer").inc()
                drained = False
                await backoff.wait()

    def _rotation(self) -> int:
        self._reads += 1
        return self._reads % self._per_lane

    def _accept(self, entries: list[tuple[str, str, str | None, int]]) -> None:
        for stream, entry_id, raw, deliveries in entries:
            if (stream, entry_id) in self._held:
                continue
            held = _Held(
                priority_rank(priority_of_stream(stream)), next(self._seq), stream, entry_id, raw, deliveries
            )
            self._held[(stream, entry_id)] = held
            heapq.heappush(self._queue, held)
        self._dispatch()

    def _dispatch(self) -> None:
        while self._queue and self.active < self.concurrency and not self._abandoned:
            held = heapq.heappop(self._queue)
            self.active += 1
            self._active_gauge.inc()
            task = asyncio.create_task(self._handle(held))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._update_room()

    # -- leases and reclaiming -----------------------------------------------------------------

    async def _lease_loop(self) -> None:
        backoff = Backoff()
        while True:
            await asyncio.sleep(self._lease_interval)
            try:
                await self._announce()
                await self._renew_leases()
                backoff.reset()
            except TRANSIENT_ERRORS:
                await backoff.wait()
            except ResponseError as exc:
                log.warning("bus: lease renewal failed", extra={"error": str(exc), "agent": self.agent_id})

    async def _renew_leases(self) -> None:
        by_stream: dict[str, list[str]] = {}
        for stream, entry_id in list(self._held):
            by_stream.setdefault(stream, []).append(entry_id)
        for stream, ids in by_stream.items():
            lost = await self._lease_script(keys=[stream], args=[REQUEST_GROUP, self.consumer_name, *ids])
            for entry_id in lost or []:
                # Another replica took it while this process stalled: do not start it here as well.
                held = self._held.get((stream, entry_id))
                if held is not None and held in self._queue:
                    self._queue.remove(held)
                    heapq.heapify(self._queue)
                    del self._held[(stream, entry_id)]
        self._update_room()

    async def _reclaim(self) -> None:
        for stream in self._streams:
            free = self._free()
            if free <= 0:
                return
            _cursor, claimed, *_deleted = await self._client.xautoclaim(
                stream, REQUEST_GROUP, self.consumer_name, self._options.claim_idle_ms, "0-0", count=free
            )
            claimed = [(i, f) for i, f in claimed if i is not None]
            if not claimed:
                continue
            counts = await delivery_counts(self._client, stream, REQUEST_GROUP, [i for i, _ in claimed])
            self.redeliveries += len(claimed)
            bus_metrics.REDELIVERIES.labels(kind="request").inc(len(claimed))
            log.info("bus: reclaimed requests", extra={"stream": stream, "count": len(claimed)})
            self._accept([(stream, i, (f or {}).get(DATA_FIELD), counts.get(i, 2)) for i, f in claimed])

    # -- handling ------------------------------------------------------------------------------

    async def _handle(self, held: _Held) -> None:
        ack = (held.stream, REQUEST_GROUP, held.entry_id)
        try:
            request = await self._parse_or_reject(held)
            if request is None:
                return
            if held.deliveries > self._options.max_deliveries:
                await self._rejecter.exhausted(held.stream, held.entry_id, held.raw, request, held.deliveries)
                self.dead_letters += 1
                return
            if request.is_expired():
                response = AgentResponseEvent.for_request(
                    request, self.agent_id, ResponseStatus.TIMEOUT, error="request expired before execution"
                )
                await self._publisher.publish(request, response, ack=ack)
                return
            if not self.idempotent:
                # Redelivered, or sent twice: answer from the first result rather than run again.
                first = await self._first_result(request.request_id)
                if first is not None:
                    await self._publisher.publish(request, first, ack=ack)
                    return
            response = await self._execute_once(request)
            await self._publisher.publish(request, response, ack=ack, remember=not self.idempotent)
            self.handled += 1
            bus_metrics.REQUESTS_HANDLED.labels(agent=self.agent_id, status=response.status.value).inc()
        except (BusUnavailable, *TRANSIENT_ERRORS) as exc:
            # Not acknowledged: the entry stays pending and is reclaimed once Redis is back.
            log.warning("bus: could not answer request", extra={"entry_id": held.entry_id, "error": str(exc)})
        finally:
            self._held.pop((held.stream, held.entry_id), None)
            self.active -= 1
            self._active_gauge.dec()
            if not self._abandoned:
                self._dispatch()
            self._update_room()

    async def _first_result(self, request_id: str) -> AgentResponseEvent | None:
        running = self._running.get(request_id)
        if running is not None:
            # The same request is executing in this consumer right now: share its outcome.
            return await asyncio.shield(running)
        return await remembered_response(self._client, self._keys, request_id)

    async def _execute_once(self, request: AgentRequestEvent) -> AgentResponseEvent:
        if self.idempotent:
            return await run_handler(self._handler, request, self.agent_id)
        outcome: asyncio.Future[AgentResponseEvent] = asyncio.get_running_loop().create_future()
        self._running[request.request_id] = outcome
        try:
            response = await run_handler(self._handler, request, self.agent_id)
            outcome.set_result(response)
            return response
        finally:
            if not outcome.done():
                outcome.cancel()
            self._running.pop(request.request_id, None)

    async def _parse_or_reject(self, held: _Held) -> AgentRequestEvent | None:
        try:
            if held.raw is None:
                raise ValueError(f"entry has no '{DATA_FIELD}' field")
            return AgentRequestEvent.from_json(held.raw)
        except (ValidationError, ValueError, ArithmeticError, TypeError) as exc:
            # Whatever the entry holds, it is answered or dead-lettered: never left pending forever.
            await self._rejecter.malformed(held.stream, held.entry_id, held.raw, str(exc))
            self.dead_letters += 1
            return None
