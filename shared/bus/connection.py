"""Redis plumbing for the bus: client creation, bounded retries, reconnect backoff, dead letters."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import BusyLoadingError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.bus import metrics as bus_metrics
from shared.bus.keys import DATA_FIELD, BusKeys

log = logging.getLogger(__name__)

# Errors that mean "Redis is not reachable right now" (as opposed to a bad command).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    BusyLoadingError,
    ConnectionError,
    OSError,
)


class BusUnavailable(RuntimeError):
    """Redis could not be reached within the bounded retries: the message was NOT accepted."""


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries for publishing; ~3 s in total by default."""

    attempts: int = 7
    first_delay: float = 0.05
    max_delay: float = 1.0

    def delays(self) -> list[float]:
        return [min(self.first_delay * 2**i, self.max_delay) for i in range(self.attempts - 1)]


def make_client(redis_url: str) -> aioredis.Redis:
    # decode_responses: entry ids, keys and JSON are all text. socket_timeout covers a server that
    # accepts the connection but never answers; blocking reads stay far below it.
    return aioredis.Redis.from_url(
        redis_url,
        decode_responses=True,
        socket_connect_timeout=2.0,
        socket_timeout=15.0,
        retry_on_timeout=False,
    )


async def with_retries[T](operation: Callable[[], Awaitable[T]], policy: RetryPolicy, what: str) -> T:
    """Run operation, retrying transient Redis errors; raise BusUnavailable when they persist."""
    delays = policy.delays()
    for attempt in range(policy.attempts):
        try:
            return await operation()
        except TRANSIENT_ERRORS as exc:
            if attempt == policy.attempts - 1:
                bus_metrics.UNAVAILABLE.labels(operation=what).inc()
                raise BusUnavailable(
                    f"Redis unavailable for {what} after {policy.attempts} attempts: {exc}"
                ) from exc
            log.warning("bus: redis error, retrying", extra={"operation": what, "attempt": attempt + 1})
            await asyncio.sleep(delays[attempt])
    raise AssertionError("unreachable")


class Backoff:
    """Exponential backoff with jitter for listeners that reconnect forever."""

    def __init__(self, first: float = 0.05, cap: float = 2.0) -> None:
        self.first = first
        self.cap = cap
        self.failures = 0

    def reset(self) -> None:
        self.failures = 0

    async def wait(self) -> None:
        delay = min(self.first * 2**self.failures, self.cap)
        self.failures += 1
        await asyncio.sleep(delay * (0.5 + random.random() / 2))


def is_nogroup(exc: ResponseError) -> bool:
    return str(exc).startswith("NOGROUP")


async def ensure_group(client: aioredis.Redis, stream: str, group: str, start_id: str = "0") -> None:
    """Create the consumer group (and the stream) unless it exists."""
    try:
        await client.xgroup_create(stream, group, id=start_id, mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def dead_letter(
    client: aioredis.Redis,
    keys: BusKeys,
    *,
    stream: str,
    group: str,
    entry_id: str,
    raw: str | None,
    reason: str,
    error: str,
    maxlen: int,
    delete_entry: bool,
) -> None:
    """Move an entry to the dead-letter stream and acknowledge it in one transaction."""
    pipe = client.pipeline(transaction=True)
    pipe.xadd(
        keys.dead_letters,
        {
            "stream": stream,
            "group": group,
            "entry_id": entry_id,
            "reason": reason,
            "error": error[:2000],
            DATA_FIELD: raw if raw is not None else "",
        },
        maxlen=maxlen,
        approximate=True,
    )
    pipe.xack(stream, group, entry_id)
    if delete_entry:
        pipe.xdel(stream, entry_id)
    await pipe.execute()
    bus_metrics.DEAD_LETTERS.labels(reason=reason).inc()
    log.warning(
        "bus: entry dead-lettered",
        extra={"stream": stream, "entry_id": entry_id, "reason": reason, "error": error[:300]},
    )


@dataclass(frozen=True)
class BusOptions:
    """Tunables of one EventBus; defaults suit production, tests shorten the idle threshold."""

    # An entry held this long by a consumer that stopped renewing its lease is reclaimed.
    claim_idle_ms: int = 30_000
    # Deliveries after which a request is dead-lettered (and its requester told so).
    max_deliveries: int = 5
    # How long one blocking read waits before the listener loop checks its state again.
    block_ms: int = 1_000
    # A failed broadcast handler is retried once its entry has been idle this long.
    subscriber_retry_ms: int = 1_000
    result_ttl_seconds: int = 86_400
    events_maxlen: int = 100_000
    dead_letter_maxlen: int = 10_000
    inbox_maxlen: int = 10_000
    inbox_ttl_seconds: int = 3_600
    # A request sent where no consumer has shown itself alive (within claim_idle_ms) waits this long for
    # one to appear, then is answered `rejected` (no_live_agent) instead of waiting out its timeout.
    presence_grace_seconds: float = 5.0
    # A request unanswered this long is checked: still queued, being served, or answered? One that
    # Redis lost (a restart without persistence, a deleted stream) is sent again, under the same id.
    # A reconnect of the requester's inbox reader checks every waiting request at once.
    audit_interval_seconds: float = 5.0
    retry: RetryPolicy = RetryPolicy()
