"""The requesting side: send a request, await its response from this instance's inbox stream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import redis.asyncio as aioredis
from pydantic import ValidationError

from shared.bus import metrics as bus_metrics
from shared.bus.batch import Coalescer
from shared.bus.connection import TRANSIENT_ERRORS, Backoff, BusOptions, with_retries
from shared.bus.events import AgentRequestEvent, AgentResponseEvent, ResponseStatus
from shared.bus.keys import DATA_FIELD

log = logging.getLogger(__name__)


class ResponseRouter:
    """Reads this instance's inbox stream and resolves the future of each awaited request."""

    def __init__(self, client: aioredis.Redis, inbox: str, agent_id: str, options: BusOptions) -> None:
        self._client = client
        self._inbox = inbox
        self._agent_id = agent_id
        self._options = options
        self._waiting: dict[str, asyncio.Future[AgentResponseEvent]] = {}
        self._task: asyncio.Task[None] | None = None
        # Position in the inbox; after a reconnect reading resumes here, so nothing is skipped.
        self._last_id = "0-0"
        self._sends: Coalescer[tuple[str, str], str] = Coalescer(self._xadd_batch)
        self._active_gauge = bus_metrics.ACTIVE_REQUESTS.labels(agent=agent_id)
        self.sent = 0
        self.received = 0
        self.timeouts = 0

    @property
    def active(self) -> int:
        return len(self._waiting)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._listen(), name=f"bus-inbox-{self._agent_id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for future in self._waiting.values():
            future.cancel()
        self._waiting.clear()

    async def request(self, event: AgentRequestEvent, stream: str, timeout: float) -> AgentResponseEvent:  # noqa: ASYNC109
        self.start()
        if event.request_id in self._waiting:
            raise ValueError(f"request_id: {event.request_id} is already awaiting a response")
        future: asyncio.Future[AgentResponseEvent] = asyncio.get_running_loop().create_future()
        self._waiting[event.request_id] = future
        self._active_gauge.inc()
        started = time.perf_counter()
        document = event.to_json()
        try:
            await self._sends.submit((stream, document))
            self.sent += 1
            try:
                async with asyncio.timeout(timeout):
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
            self._active_gauge.dec()

    async def _xadd_batch(self, batch: list[tuple[str, str]]) -> list[str]:
        """Requests sent in the same loop turn go out in one pipeline; BusUnavailable if Redis stays away."""

        async def attempt() -> list[str]:
            pipe = self._client.pipeline(transaction=False)
            for stream, document in batch:
                pipe.xadd(stream, {DATA_FIELD: document})
            return list(await pipe.execute())

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
                await backoff.wait()
                continue
            for _stream, entries in batches:
                for entry_id, fields in entries:
                    self._last_id = entry_id
                    if fields and DATA_FIELD in fields:
                        self._resolve(fields[DATA_FIELD])
