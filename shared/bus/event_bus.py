"""The agent event bus on Redis Streams: at-least-once requests and durable broadcasts.

    async with EventBus(redis_url, prefix, agent_id="orchestrator") as bus:
        response = await bus.request_agent(AgentRequestEvent(...))

Requests go to per-agent and per-capability streams read by consumer groups (bus_consumer);
responses come back on each requester's inbox stream (bus_requester); broadcasts go to one
events stream trimmed by length (bus_broadcast). See docs/EVENT_PROTOCOL.md.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import Any, Self

from shared.bus import metrics as bus_metrics
from shared.bus.broadcast import NEW_EVENTS, Subscription
from shared.bus.cancels import cancel_reasons, request_cancel, watch_cancels
from shared.bus.connection import BusOptions, make_client, with_retries
from shared.bus.consumer import RequestConsumer
from shared.bus.events import (
    AgentRequestEvent,
    AgentResponseEvent,
    ErrorClass,
    InterAgentEvent,
    ResponseStatus,
    utc_now,
)
from shared.bus.execute import RequestHandler
from shared.bus.keys import DATA_FIELD, BusKeys, request_target
from shared.bus.replies import ReplyPublisher
from shared.bus.requests import OnResend, ResponseRouter
from shared.config import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BusStats:
    """Counters of one EventBus instance (Prometheus has the process-wide ones)."""

    events_emitted: int
    events_delivered: int
    subscriber_errors: int
    requests_sent: int
    responses_received: int
    active_requests: int
    request_timeouts: int
    requests_resent: int
    requests_handled: int
    handlers_active: int
    redeliveries: int
    dead_letters: int


class EventBus:
    def __init__(
        self,
        redis_url: str,
        prefix: str = "devtools",
        *,
        agent_id: str = "client",
        options: BusOptions | None = None,
    ) -> None:
        if not agent_id:
            raise ValueError("agent_id: must not be empty")
        self.redis_url = redis_url
        self.keys = BusKeys(prefix)
        self.agent_id = agent_id
        self.options = options or BusOptions()
        self.instance = uuid.uuid4().hex[:12]
        self.inbox = self.keys.inbox(agent_id, self.instance)
        self._client = make_client(redis_url)
        self._publisher = ReplyPublisher(self._client, self.keys, self.options)
        self._router = ResponseRouter(self._client, self.keys, self.inbox, agent_id, self.options)
        self._consumers: list[RequestConsumer] = []
        self._subscriptions: list[Subscription] = []
        self._emitted = 0
        self._started = False

    @classmethod
    def from_settings(cls, settings: Settings, agent_id: str = "client", **kwargs: Any) -> EventBus:
        redis_url = settings.redis_url
        if redis_url is None:
            from shared.embedded import embedded_servers

            redis_url = embedded_servers(settings.data_dir)[1].ensure_running()
        return cls(redis_url, settings.redis_prefix, agent_id=agent_id, **kwargs)

    @property
    def client(self) -> Any:
        """The underlying redis.asyncio client (for diagnostics and tests)."""
        return self._client

    async def start(self) -> None:
        if self._started:
            return
        await with_retries(self._client.ping, self.options.retry, "connect")
        # The inbox reader starts with the first request_agent: serving-only buses need no inbox.
        self._started = True

    async def close(self) -> None:
        for consumer in list(self._consumers):
            await consumer.stop(drain=False)
        for subscription in list(self._subscriptions):
            await subscription.stop()
        self._consumers.clear()
        self._subscriptions.clear()
        await self._router.stop()
        try:
            await self._client.delete(self.inbox)
        except Exception:  # closing must not fail because Redis is down; the inbox has a TTL
            log.debug("bus: could not delete inbox on close", extra={"inbox": self.inbox})
        await self._client.aclose()
        self._started = False

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- requests ------------------------------------------------------------------------------

    async def request_agent(
        self,
        event: AgentRequestEvent,
        timeout: float | None = None,  # noqa: ASYNC109
        on_resend: OnResend | None = None,
    ) -> AgentResponseEvent:
        """Send a request and await its response (a `timeout` response if none comes in time).

        Raises BusUnavailable when Redis cannot accept the request; once accepted it is not lost:
        if Redis loses it, it is sent again under the same id and `on_resend(request_id)` is awaited.
        A request no live consumer serves is answered `rejected` (`no_live_agent`) after the grace
        period (requests.py).
        """
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout: must be positive")
        await self.start()
        wait = timeout if timeout is not None else event.timeout_seconds
        assert event.expires_at is not None
        # Nobody waits for the answer after the deadline, so nobody should start the work after it.
        expires_at = min(event.expires_at, utc_now() + timedelta(seconds=wait))
        sent = event.model_copy(update={"reply_to": self.inbox, "expires_at": expires_at})
        return await self._router.request(sent, request_target(sent), wait, on_resend)

    async def cancel_request(self, request_id: str, reason: str, ttl_seconds: float) -> None:
        """Tell whichever agent serves `request_id` to stop (or never to start) it (cancels.py)."""
        await request_cancel(self._client, self.keys, request_id, reason, ttl_seconds)

    async def cancel_reason(self, request_id: str) -> str | None:
        """Why `request_id` was cancelled by its requester, or None."""
        return (await cancel_reasons(self._client, self.keys, [request_id])).get(request_id)

    async def watch_cancels(
        self,
        running: Callable[[], list[str]],
        on_cancel: Callable[[str, str], Awaitable[None] | None],
        stop: asyncio.Event,
    ) -> None:
        """Until `stop`: `on_cancel(request_id, reason)` for each of `running()` that gets cancelled."""
        await watch_cancels(self._client, self.keys, running, on_cancel, stop)

    async def send_request(self, event: AgentRequestEvent) -> str:
        """Enqueue a request without waiting; its reply_to (if any) gets the answer. Returns the entry id."""
        await self.start()
        document = event.to_json()
        stream = self.keys.request_stream(request_target(event), event.priority)
        entry_id: str = await with_retries(
            lambda: self._client.xadd(stream, {DATA_FIELD: document}), self.options.retry, "request"
        )
        return entry_id

    async def respond_to_request(
        self,
        request: AgentRequestEvent,
        result: dict[str, Any] | None = None,
        *,
        status: ResponseStatus = ResponseStatus.SUCCESS,
        error: str | None = None,
        error_code: str | None = None,
        error_class: ErrorClass | None = None,
        retry_after_seconds: float | None = None,
    ) -> AgentResponseEvent:
        """Answer a request outside serve_requests (e.g. one received over HTTP with a reply_to)."""
        response = AgentResponseEvent.for_request(
            request,
            self.agent_id,
            status,
            result=result,
            error=error,
            error_code=error_code,
            error_class=error_class,
            retry_after_seconds=retry_after_seconds,
        )
        await self._publisher.publish(request, response)
        return response

    async def serve_requests(
        self,
        agent_id: str,
        capabilities: list[str],
        handler: RequestHandler,
        *,
        concurrency: int = 4,
        idempotent: bool = True,
        consumer_name: str | None = None,
        on_full: Callable[[bool], None] | None = None,
    ) -> RequestConsumer:
        """Start a consumer for agent_id's requests and those for any of its capabilities.

        handler returns a result dict (-> success) or a full AgentResponseEvent; an exception
        becomes an `error` response. With idempotent=False a redelivered request is answered from
        its first result instead of running the handler again. on_full(True/False) reports when
        every slot is busy.
        """
        consumer = RequestConsumer(
            self._client,
            self.keys,
            self.options,
            self._publisher,
            agent_id=agent_id,
            capabilities=capabilities,
            handler=handler,
            concurrency=concurrency,
            idempotent=idempotent,
            consumer_name=consumer_name,
            on_full=on_full,
        )
        await with_retries(consumer.start, self.options.retry, "serve")
        self._consumers.append(consumer)
        return consumer

    # -- broadcasts ----------------------------------------------------------------------------

    async def emit(self, event: InterAgentEvent) -> str:
        """Append a broadcast event; returns its stream entry id. Raises BusUnavailable, never drops."""
        document = event.to_json()
        entry_id: str = await with_retries(
            lambda: self._client.xadd(
                self.keys.events, {DATA_FIELD: document}, maxlen=self.options.events_maxlen, approximate=True
            ),
            self.options.retry,
            "emit",
        )
        self._emitted += 1
        bus_metrics.EVENTS_EMITTED.labels(event_type=event.event_type.value).inc()
        return entry_id

    async def subscribe(
        self,
        pattern: str,
        handler: Callable[[InterAgentEvent], Awaitable[None]],
        group: str,
        *,
        start: str = NEW_EVENTS,
    ) -> Subscription:
        """Deliver events whose type matches pattern (fnmatch, e.g. "agent.*") to handler, once per group.

        start applies only when the group is created: "$" (default) delivers events emitted from
        then on, "0" every event still on the stream too, an entry id the events after it. An
        existing group resumes from its position.
        """
        subscription = Subscription(
            self._client, self.keys, self.options, pattern=pattern, handler=handler, group=group, start=start
        )
        await with_retries(subscription.start, self.options.retry, "subscribe")
        self._subscriptions.append(subscription)
        return subscription

    # -- introspection -------------------------------------------------------------------------

    def stats(self) -> BusStats:
        return BusStats(
            events_emitted=self._emitted,
            events_delivered=sum(s.delivered for s in self._subscriptions),
            subscriber_errors=sum(s.errors for s in self._subscriptions),
            requests_sent=self._router.sent,
            responses_received=self._router.received,
            active_requests=self._router.active,
            request_timeouts=self._router.timeouts,
            requests_resent=self._router.resent,
            requests_handled=sum(c.handled for c in self._consumers),
            handlers_active=sum(c.active for c in self._consumers),
            redeliveries=sum(c.redeliveries for c in self._consumers),
            dead_letters=sum(c.dead_letters for c in self._consumers)
            + sum(s.dead_letters for s in self._subscriptions),
        )

    async def dead_letters(self, count: int = 100) -> list[dict[str, str]]:
        """The most recent dead-lettered entries, newest first."""
        entries = await self._client.xrevrange(self.keys.dead_letters, count=count)
        return [{"id": entry_id, **fields} for entry_id, fields in entries]
