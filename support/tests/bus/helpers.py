"""Helpers for event bus tests: collecting broadcast events and answers, awaiting Redis state."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from shared.bus import (
    DATA_FIELD,
    TRANSIENT_ERRORS,
    AgentResponseEvent,
    Backoff,
    BusOptions,
    EventBus,
    InterAgentEvent,
)

# Short idle/blocking times so that reclaims and retries happen within a test.
FAST = BusOptions(claim_idle_ms=300, block_ms=200, subscriber_retry_ms=200)


class Collector:
    """Records delivered events (with the member that got them) and lets a test await a number of them."""

    def __init__(self) -> None:
        self.events: list[InterAgentEvent] = []
        self.members: list[str] = []
        self._changed = asyncio.Condition()

    async def __call__(self, received: InterAgentEvent) -> None:
        await self.record(received, "")

    def member(self, name: str) -> Callable[[InterAgentEvent], Awaitable[None]]:
        return lambda received: self.record(received, name)

    async def record(self, received: InterAgentEvent, member: str) -> None:
        async with self._changed:
            self.events.append(received)
            self.members.append(member)
            self._changed.notify_all()

    async def wait_for(self, count: int, seconds: float = 15) -> None:
        async with asyncio.timeout(seconds), self._changed:
            await self._changed.wait_for(lambda: len(self.events) >= count)


class InboxReader:
    """Reads a reply stream the test owns, across Redis outages, keeping every answer per request.

    Unlike request_agent, which keeps the first answer of a request, this shows duplicates too.
    """

    def __init__(self, client: Any, stream: str) -> None:
        self._client = client
        self.stream = stream
        self.answers: dict[str, list[AgentResponseEvent]] = {}
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> InboxReader:
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _read(self) -> None:
        last, backoff = "0-0", Backoff()
        while True:
            try:
                batches = await self._client.xread({self.stream: last}, block=500)
            except TRANSIENT_ERRORS:  # Redis restarting: the entries are still there afterwards
                await backoff.wait()
                continue
            backoff.reset()
            async with self._changed:
                for _stream, entries in batches:
                    for entry_id, fields in entries:
                        last = entry_id
                        answer = AgentResponseEvent.from_json(fields[DATA_FIELD])
                        self.answers.setdefault(answer.request_id, []).append(answer)
                self._changed.notify_all()

    async def wait_for(self, request_id: str, seconds: float = 60, count: int = 1) -> AgentResponseEvent:
        """The first answer to request_id, once `count` answers to it have arrived."""
        async with asyncio.timeout(seconds), self._changed:
            await self._changed.wait_for(lambda: len(self.answers.get(request_id, [])) >= count)
        return self.answers[request_id][0]

    def answered(self, request_id: str) -> bool:
        return request_id in self.answers


async def eventually(
    predicate: Callable[[], Awaitable[bool]], seconds: float = 15, what: str = "state"
) -> None:
    """Poll Redis state that no event announces (e.g. a consumer group's pending count) with a deadline."""
    try:
        async with asyncio.timeout(seconds):
            while not await _holds(predicate):  # noqa: ASYNC110 - the state is in Redis, no event announces it
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise TimeoutError(f"timed out waiting for {what}") from None


async def _holds(predicate: Callable[[], Awaitable[bool]]) -> bool:
    try:
        return await predicate()
    except TRANSIENT_ERRORS:  # a pooled connection from before a Redis restart: ask again
        return False


async def group_drained(bus: EventBus, group: str) -> bool:
    """True when the subscriber group has no event pending: none can be redelivered any more."""
    return int((await bus.client.xpending(bus.keys.events, group))["pending"]) == 0
