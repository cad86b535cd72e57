"""`async with locks.acquire(...)`: wait in queue order, hold the lease, release it on every exit.

Waiting joins the database queue and sleeps on an event woken by NOTIFY for this waiter's queue id, or by
a timer at the current holder's expiry (a dead holder sends no NOTIFY), or by a slow safety re-check
(`recheck_interval`) for a waiter killed while at the head of the queue.

It talks to the manager only through `LockCalls` (the manager's public methods), so this module never
imports the manager: the manager imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Protocol

import psycopg

from shared.locks.errors import LeaseLostError, ResourceLockError
from shared.locks.lease import Lease, OnLost
from shared.locks.listener import LockEventListener
from shared.locks.metrics import (
    LOCK_ACQUISITIONS,
    LOCK_ACTIVE,
    LOCK_CONTENTIONS,
    LOCK_HOLD_SECONDS,
    LOCK_TIMEOUTS,
    LOCK_WAIT_SECONDS,
    resource_kind,
)
from shared.locks.results import AcquireResult, ReleaseResult, RenewResult

log = logging.getLogger(__name__)


class LockCalls(Protocol):
    """What an acquisition needs of its ResourceLockManager (which implements all of it)."""

    async def try_acquire(
        self,
        resource_id: str,
        owner: str,
        *,
        ttl: int = ...,
        mode: str = ...,
        reason: str | None = ...,
        metadata: dict[str, Any] | None = ...,
    ) -> AcquireResult: ...

    async def release(self, resource_id: str, owner: str, fencing_token: int) -> ReleaseResult: ...

    async def renew(self, resource_id: str, owner: str, fencing_token: int, ttl: int) -> RenewResult: ...

    async def enqueue_waiter(
        self, resource_id: str, owner: str, mode: str, priority: int, wait_seconds: float | None
    ) -> tuple[int, int]: ...

    async def leave_queue(self, queue_id: int) -> None: ...

    def track_lease(self, lease: Lease) -> None: ...

    def untrack_lease(self, lease: Lease) -> None: ...


class LockAcquisition:
    """The `async with` of ResourceLockManager.acquire: waits, yields a Lease, releases on every exit."""

    def __init__(
        self,
        manager: LockCalls,
        listener: LockEventListener,
        resource_id: str,
        owner: str,
        ttl: int,
        wait_timeout: float | None,
        priority: int,
        mode: str,
        reason: str | None,
        metadata: dict[str, Any],
        on_lost: OnLost,
        recheck_interval: float,
    ) -> None:
        self._m = manager
        # The manager's listener: wakes this waiter by queue id; `enqueue_waiter` enqueued under its pid.
        self._listener = listener
        self.resource_id, self.owner, self.ttl, self.mode = resource_id, owner, ttl, mode
        self._wait_timeout, self._priority = wait_timeout, priority
        self._reason, self._metadata = reason, metadata
        self._on_lost, self._recheck = on_lost, recheck_interval
        self._kind = resource_kind(resource_id) if isinstance(resource_id, str) else "other"
        self.lease: Lease | None = None

    async def _attempt(self) -> AcquireResult:
        # Shielded: if we are cancelled while the call is in flight, it may still commit an acquisition,
        # which must then be released rather than left held until its TTL.
        call = asyncio.ensure_future(
            self._m.try_acquire(
                self.resource_id,
                self.owner,
                ttl=self.ttl,
                mode=self.mode,
                reason=self._reason,
                metadata=self._metadata,
            )
        )
        try:
            return await asyncio.shield(call)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                result = await call
                if result.acquired and result.fencing_token is not None:
                    await self._m.release(self.resource_id, self.owner, result.fencing_token)
            raise

    async def __aenter__(self) -> Lease:
        started = time.monotonic()
        result = await self._attempt()
        if not result.acquired:
            LOCK_CONTENTIONS.labels(self._kind).inc()
            if self._wait_timeout == 0:
                raise self._timeout_error(result, 0)
            result = await self._wait(result, started)
        assert result.fencing_token is not None and result.expires_at is not None
        LOCK_ACQUISITIONS.labels(self._kind, self.mode).inc()
        LOCK_WAIT_SECONDS.labels(self._kind).observe(time.monotonic() - started)
        LOCK_ACTIVE.labels(self._kind).inc()
        self.lease = Lease(
            resource_id=self.resource_id,
            owner=self.owner,
            fencing_token=int(result.fencing_token),
            mode=self.mode,
            ttl=self.ttl,
            expires_at=result.expires_at,
            renew=self._m.renew,
            on_lost=self._on_lost,
            holder_task=asyncio.current_task(),
        )
        self.lease.start_renewal()
        self._m.track_lease(self.lease)
        return self.lease

    async def _wait(self, result: AcquireResult, started: float) -> AcquireResult:
        deadline = None if self._wait_timeout is None else started + self._wait_timeout
        queue_id, generation = await self._m.enqueue_waiter(
            self.resource_id, self.owner, self.mode, self._priority, self._wait_timeout
        )
        wake = self._listener.register(queue_id)
        try:
            while True:
                wake.clear()  # before the attempt: a NOTIFY arriving during it is not lost
                if self._listener.generation != generation:  # listener reconnected: new pid
                    self._listener.unregister(queue_id)
                    remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
                    queue_id, generation = await self._m.enqueue_waiter(
                        self.resource_id, self.owner, self.mode, self._priority, remaining
                    )
                    wake = self._listener.register(queue_id)
                    wake.clear()
                result = await self._attempt()
                if result.acquired:
                    return result  # the procedure removed our queue entry in the same transaction
                timeout = self._recheck
                if result.expires_at is not None:  # a dead holder sends no NOTIFY: wake at its expiry
                    until_expiry = (result.expires_at - datetime.now(UTC)).total_seconds() + 0.005
                    timeout = min(timeout, max(until_expiry, 0.001))
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        LOCK_TIMEOUTS.labels(self._kind).inc()
                        raise self._timeout_error(result, self._wait_timeout or 0)
                    timeout = min(timeout, remaining)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout)
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._m.leave_queue(queue_id))
            raise
        finally:
            self._listener.unregister(queue_id)

    def _timeout_error(self, result: AcquireResult, waited: float) -> ResourceLockError:
        holder = result.holder or "a waiter ahead in the queue"
        until = result.expires_at.isoformat() if result.expires_at else "unknown"
        return ResourceLockError(
            f"could not lock {self.resource_id} for {self.owner} within {waited:g}s: held by {holder} "
            f"until {until} ({result.message})",
            resource_id=self.resource_id,
            holder=result.holder,
            expires_at=result.expires_at,
        )

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        lease = self.lease
        assert lease is not None
        self._m.untrack_lease(lease)
        await lease.stop_renewal()
        LOCK_ACTIVE.labels(self._kind).dec()
        LOCK_HOLD_SECONDS.labels(self._kind).observe(time.monotonic() - lease.acquired_monotonic)
        if not lease.lost:
            release = asyncio.ensure_future(
                self._m.release(lease.resource_id, lease.owner, lease.fencing_token)
            )
            try:
                result = await asyncio.shield(release)  # finishes even if we are cancelled meanwhile
                if not result.released:
                    log.warning(
                        "lock release refused",
                        extra={"resource_id": lease.resource_id, "message": result.message},
                    )
            except (psycopg.Error, OSError) as err:
                # The lease simply runs out at its TTL; nothing stays locked forever.
                log.error(
                    "lock release failed; the lease expires at its TTL",
                    extra={"resource_id": lease.resource_id, "error": str(err)},
                )
        if lease.cancelled_for_loss and exc_type is asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            raise LeaseLostError(
                f"lease on {lease.resource_id} lost while held: {lease.lost_reason}",
                resource_id=lease.resource_id,
                holder=None,
                expires_at=lease.expires_at,
            ) from None
        return False
