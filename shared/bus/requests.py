"""The requesting side: send a request, await its response from this instance's inbox stream.

Two ways a request could otherwise wait out its whole timeout for nothing, and what happens instead:
- No consumer of its target is alive (no agent offers the capability, the agent is not running):
  the presence key its consumers refresh is checked in the same pipeline as the send; absent, the
  request gets `presence_grace_seconds` for one to appear, then is withdrawn and answered `rejected`
  with error code `no_live_agent`.
- Redis lost it (restarted without persistence, the stream was deleted): the audit finds the entry
  gone from its stream with no stored result and no answer in the inbox, and sends it again under the
  same request id (a consumer that already answered it answers from its stored result), calling the
  requester's `on_resend`. The audit runs for every waiting request when the inbox reader had to
  reconnect, and every `audit_interval_seconds` for requests waiting that long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from pydantic import ValidationError

from shared.bus import metrics as bus_metrics
from shared.bus.batch import Coalescer
from shared.bus.connection import TRANSIENT_ERRORS, Backoff, BusOptions, with_retries
from shared.bus.events import AgentRequestEvent, AgentResponseEvent, ResponseStatus
from shared.bus.keys import DATA_FIELD, BusKeys

log = logging.getLogger(__name__)

NO_LIVE_AGENT = "no_live_agent"
_PRESENCE_POLL_SECONDS = 0.1

OnResend = Callable[[str], Awaitable[None]]


@dataclass
class _Sent:
    """A request on its way: where it was written, so the audit can tell whether Redis still has it."""

    event: AgentRequestEvent
    stream: str
    document: str
    entry_id: str
    sent_at: float
    on_resend: OnResend | None


class ResponseRouter:
    """Reads this instance's inbox stream and resolves the future of each awaited request."""

    def __init__(
        self, client: aioredis.Redis, keys: BusKeys, inbox: str, agent_id: str, options: BusOptions
    ) -> None:
        self._client = client
        self._keys = keys
        self._inbox = inbox
        self._agent_id = agent_id
        self._options = options
        self._waiting: dict[str, asyncio.Future[AgentResponseEvent]] = {}
        self._sent: dict[str, _Sent] = {}
        self._task: asyncio.Task[None] | None = None
        self._audit_task: asyncio.Task[None] | None = None
        self._audit_all = asyncio.Event()  # set when the inbox reader reconnected
        # Position in the inbox; after a reconnect reading resumes here, so nothing is skipped.
        self._last_id = "0-0"
        self._sends: Coalescer[tuple[str, str, str], tuple[str, bool]] = Coalescer(self._xadd_batch)
        self._active_gauge = bus_metrics.ACTIVE_REQUESTS.labels(agent=agent_id)
        self.sent = 0
        self.received = 0
        self.timeouts = 0
        self.resent = 0

    @property
    def active(self) -> int:
        return len(self._waiting)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._listen(), name=f"bus-inbox-{self._agent_id}")
            self._audit_task = asyncio.create_task(self._audit_loop(), name=f"bus-audit-{self._agent_id}")

    async def stop(self) -> None:
        for task in (self._task, self._audit_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._audit_task = None
        self._sent.clear()
        for future in self._waiting.values():
            future.cancel()
        self._waiting.clear()

    async def request(
        self,
        event: AgentRequestEvent,
        target: str,
        timeout: float,  # noqa: ASYNC109
        on_resend: OnResend | None = None,
    ) -> AgentResponseEvent:
        """Send `event` to `target` ('agent:<id>' or 'cap:<name>') and await its response."""
        self.start()
        if event.request_id in self._waiting:
            raise ValueError(f"request_id: {event.request_id} is already awaiting a response")
        future: asyncio.Future[AgentResponseEvent] = asyncio.get_running_loop().create_future()
        self._waiting[event.request_id] = future
        self._active_gauge.inc()
        started = time.perf_counter()
        stream = self._keys.request_stream(target, event.priority)
        document = event.to_json()
        try:
            entry_id, present = await self._sends.submit((stream, document, self._keys.presence(target)))
            self.sent += 1
            self._sent[event.request_id] = _Sent(
                event, stream, document, entry_id, time.monotonic(), on_resend
            )
            try:
                async with asyncio.timeout(timeout):
                    if not present and not await self._await_presence(target, future, timeout):
                        return await self._withdraw(event, target, stream, entry_id, started)
                    response = await future
            except TimeoutError:
                self.timeouts += 1
                bus_metrics.REQUEST_TIMEOUTS.labels(agent=self._agent_id).inc()
                response = AgentResponseEvent.for_request(
                    event,
                    source_agent=event.target_agent,
                    status=ResponseStatus.TIMEOUT,
                    error=f"no response from {event.target_agent} within {timeout:g}s",
                    processing_time_ms=(time.perf_counter() - started) * 1000,
                )
            bus_metrics.REQUEST_LATENCY.labels(agent=self._agent_id, status=response.status.value).observe(
                time.perf_counter() - started
            )
            return response
        finally:
            self._waiting.pop(event.request_id, None)
            self._sent.pop(event.request_id, None)
            self._active_gauge.dec()

    async def _await_presence(
        self,
        target: str,
        future: asyncio.Future[AgentResponseEvent],
        timeout: float,  # noqa: ASYNC109
    ) -> bool:
        """True once a consumer of `target` shows itself (or answers) within the grace period; a grace
        as long as the timeout is no grace: the request then simply times out."""
        grace = self._options.presence_grace_seconds
        if grace >= timeout:
            return True
        deadline = time.monotonic() + grace
        key = self._keys.presence(target)
        while time.monotonic() < deadline:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(future), _PRESENCE_POLL_SECONDS)
            if future.done():
                return True
            with contextlib.suppress(*TRANSIENT_ERRORS):
                if await self._client.exists(key):
                    return True
        return future.done()

    async def _withdraw(
        self, event: AgentRequestEvent, target: str, stream: str, entry_id: str, started: float
    ) -> AgentResponseEvent:
        """Nobody serves `target`: take the request back so that no agent starting later runs work that
        nobody waits for, and answer it `rejected`."""
        with contextlib.suppress(*TRANSIENT_ERRORS):
            await self._client.xdel(stream, entry_id)
        bus_metrics.REQUESTS_UNROUTABLE.labels(agent=self._agent_id).inc()
        what = target.replace("cap:", "capability ", 1).replace("agent:", "agent ", 1)
        grace = self._options.presence_grace_seconds
        log.warning("bus: no live agent", extra={"request_id": event.request_id, "target": target})
        return AgentResponseEvent.for_request(
            event,
            source_agent=event.target_agent,
            status=ResponseStatus.REJECTED,
            error=f"no live agent serves {what} (none seen alive within {grace:g}s)",
            error_code=NO_LIVE_AGENT,
            processing_time_ms=(time.perf_counter() - started) * 1000,
        )

    async def _xadd_batch(self, batch: list[tuple[str, str, str]]) -> list[tuple[str, bool]]:
        """Requests sent in the same loop turn go out in one pipeline, each with the check that some
        consumer of its target is alive; BusUnavailable if Redis stays away."""

        async def attempt() -> list[tuple[str, bool]]:
            pipe = self._client.pipeline(transaction=False)
            for stream, document, presence in batch:
                pipe.xadd(stream, {DATA_FIELD: document})
                pipe.exists(presence)
            replies = list(await pipe.execute())
            return [(replies[i], bool(replies[i + 1])) for i in range(0, len(replies), 2)]

        return await with_retries(attempt, self._options.retry, "request")

    def _resolve(self, document: str) -> None:
        try:
            response = AgentResponseEvent.from_json(document)
        except ValidationError as exc:
            log.warning("bus: malformed response ignored", extra={"inbox": self._inbox, "error": str(exc)})
            return
        future = self._waiting.get(response.request_id)
        # A request answered twice (redelivered after a crash) resolves once; later copies are dropped.
        if future is not None and not future.done():
            future.set_result(response)
            self.received += 1

    async def _listen(self) -> None:
        backoff = Backoff()
        while True:
            try:
                batches = await self._client.xread(
                    {self._inbox: self._last_id}, count=512, block=self._options.block_ms
                )
                backoff.reset()
            except TRANSIENT_ERRORS:
                bus_metrics.LISTENER_RECONNECTS.labels(kind="inbox").inc()
                self._audit_all.set()  # Redis may have restarted without what it held
                await backoff.wait()
                continue
            for _stream, entries in batches:
                for entry_id, fields in entries:
                    self._last_id = entry_id
                    if fields and DATA_FIELD in fields:
                        self._resolve(fields[DATA_FIELD])

    # -- audit: requests Redis lost ----------------------------------------------------------------

    async def _audit_loop(self) -> None:
        interval = self._options.audit_interval_seconds
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._audit_all.wait()
            everything = self._audit_all.is_set()
            self._audit_all.clear()
            due = time.monotonic() - interval
            sent = [s for s in self._sent.values() if everything or s.sent_at <= due]
            if not sent:
                continue
            try:
                await self.audit(sent)
            except TRANSIENT_ERRORS:
                if everything:  # Redis still away: check everything again once it is back
                    self._audit_all.set()
                await asyncio.sleep(min(interval, 0.5))

    async def audit(self, sent: list[_Sent]) -> None:
        """Send again each of `sent` that its stream no longer holds, that has no stored result and whose
        answer is not in the inbox either."""
        pipe = self._client.pipeline(transaction=False)
        for item in sent:
            pipe.xrange(item.stream, item.entry_id, item.entry_id, count=1)
            pipe.exists(self._keys.result(item.event.request_id))
        replies = await pipe.execute()
        missing = [
            item
            for n, item in enumerate(sent)
            if not replies[2 * n] and not replies[2 * n + 1] and item.event.request_id in self._waiting
        ]
        if not missing:
            return
        # Answered and removed since the check? The answer is in the inbox, written with the removal.
        for _entry_id, fields in await self._client.xrange(self._inbox, f"({self._last_id}", "+"):
            if fields and DATA_FIELD in fields:
                self._resolve(fields[DATA_FIELD])
        for item in missing:
            future = self._waiting.get(item.event.request_id)
            if future is None or future.done():
                continue
            item.entry_id = await self._client.xadd(item.stream, {DATA_FIELD: item.document})
            item.sent_at = time.monotonic()
            self.resent += 1
            bus_metrics.REQUESTS_RESENT.labels(agent=self._agent_id).inc()
            log.warning(
                "bus: request lost by Redis, sent again",
                extra={"request_id": item.event.request_id, "stream": item.stream},
            )
            if item.on_resend is not None:
                try:
                    await item.on_resend(item.event.request_id)
                except Exception as exc:  # the resend happened; only its report failed
                    log.warning("bus: on_resend failed", extra={"error": str(exc)})
