"""Lease-based resource locks over the stored procedures in config/state/010_resource_locks.sql.

    locks = await ResourceLockManager.connect(database_url)
    async with locks.acquire("env:staging", owner="run-123", ttl=60, wait_timeout=30) as lease:
        deploy(fencing_token=lease.fencing_token)
    await locks.close()

Every call is one short autocommit transaction on a pooled connection (safe behind PgBouncer's
transaction pooling). Waiting joins the database queue and sleeps on an event woken by NOTIFY for this
waiter's queue id, or by a timer at the current holder's expiry (a dead holder sends no NOTIFY), or by a
slow safety re-check (`recheck_interval`) for a waiter killed while at the head of the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from shared.db import open_pool
from shared.lib.resource_lock_errors import (
    LeaseLostError,
    LockArgumentError,
    ResourceLockError,
    argument_error_from,
)
from shared.lib.resource_lock_lease import Lease, OnLost, RenewResult
from shared.lib.resource_lock_listener import LockEventListener
from shared.lib.resource_lock_metrics import (
    LOCK_ACQUISITIONS,
    LOCK_ACTIVE,
    LOCK_CONTENTIONS,
    LOCK_HOLD_SECONDS,
    LOCK_TIMEOUTS,
    LOCK_WAIT_SECONDS,
    resource_kind,
)

__all__ = [
    "AcquireResult",
    "Lease",
    "LeaseLostError",
    "LockArgumentError",
    "LockStatus",
    "ResourceLockError",
    "ResourceLockManager",
]

log = logging.getLogger(__name__)

SQL_ACQUIRE = "SELECT * FROM acquire_resource_lock(%s, %s, %s, %s, %s, %s)"
SQL_RELEASE = "SELECT * FROM release_resource_lock(%s, %s, %s)"
SQL_RENEW = "SELECT * FROM renew_resource_lock(%s, %s, %s, %s)"
SQL_STATUS = "SELECT * FROM check_lock_status(%s)"
SQL_FORCE_RELEASE = "SELECT * FROM force_release_lock(%s, %s, %s)"
SQL_CLEANUP = "SELECT cleanup_expired_locks() AS expired"
SQL_ENQUEUE = "SELECT enqueue_lock_waiter(%s, %s, %s, %s, %s, %s) AS queue_id"
SQL_LEAVE_QUEUE = "SELECT leave_lock_queue(%s) AS left_queue"
SQL_ACTIVE = "SELECT * FROM active_locks_view ORDER BY resource_id, fencing_token"


@dataclass(frozen=True)
class AcquireResult:
    acquired: bool
    fencing_token: int | None
    holder: str | None
    expires_at: datetime | None
    message: str


@dataclass(frozen=True)
class ReleaseResult:
    released: bool
    holder: str | None
    message: str


@dataclass(frozen=True)
class LockStatus:
    resource_id: str
    locked: bool
    mode: str | None
    holder: str | None
    owners: list[str]
    fencing_token: int | None
    acquired_at: datetime | None
    expires_at: datetime | None
    waiters: int
    last_token: int | None


class ResourceLockManager:
    def __init__(self, pool: AsyncConnectionPool, listener: LockEventListener, *, owns_pool: bool) -> None:
        self._pool = pool
        self._listener = listener
        self._owns_pool = owns_pool

    @classmethod
    async def connect(
        cls, database_url: str, *, min_size: int = 1, max_size: int = 4, name: str = "devtools-locks"
    ) -> ResourceLockManager:
        pool = await open_pool(database_url, min_size=min_size, max_size=max_size, name=name)
        try:
            return await cls._start(pool, database_url, owns_pool=True, name=name)
        except BaseException:
            await pool.close()
            raise

    @classmethod
    async def from_pool(
        cls, pool: AsyncConnectionPool, *, name: str = "devtools-locks"
    ) -> ResourceLockManager:
        """Share an existing autocommit pool (shared.db.open_pool); the caller keeps closing it."""
        return await cls._start(pool, pool.conninfo, owns_pool=False, name=name)

    @classmethod
    async def _start(
        cls, pool: AsyncConnectionPool, conninfo: str, *, owns_pool: bool, name: str
    ) -> ResourceLockManager:
        listener = LockEventListener(conninfo, name=f"{name}-listener")
        await listener.start()
        return cls(pool, listener, owns_pool=owns_pool)

    @property
    def pool(self) -> AsyncConnectionPool:
        return self._pool

    async def close(self) -> None:
        await self._listener.close()
        if self._owns_pool:
            await self._pool.close()

    async def __aenter__(self) -> ResourceLockManager:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def acquire(
        self,
        resource_id: str,
        *,
        owner: str,
        ttl: int = 300,
        wait_timeout: float | None = None,
        priority: int = 0,
        mode: str = "exclusive",
        reason: str | None = None,
        metadata: dict[str, Any] | None = None,
        on_lost: OnLost = "cancel",
        recheck_interval: float = 2.0,
    ) -> LockAcquisition:
        """`async with` this: wait up to wait_timeout seconds (None: forever, 0: don't wait) for a lease."""
        if wait_timeout is not None and wait_timeout < 0:
            raise LockArgumentError(
                "wait_timeout", f"invalid wait_timeout: must not be negative, got {wait_timeout}"
            )
        if recheck_interval <= 0:
            raise LockArgumentError("recheck_interval", "invalid recheck_interval: must be positive")
        if on_lost not in ("cancel", "signal"):
            raise LockArgumentError("on_lost", f"invalid on_lost: 'cancel' or 'signal', got {on_lost!r}")
        return LockAcquisition(
            self,
            resource_id,
            owner,
            ttl,
            wait_timeout,
            priority,
            mode,
            reason,
            metadata or {},
            on_lost,
            recheck_interval,
        )

    # --- one stored-procedure call each --------------------------------------------------------------

    async def _rows(self, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(sql, params)
                return await cur.fetchall()
        except psycopg.Error as exc:
            mapped = argument_error_from(exc)
            if mapped is not None:
                raise mapped from None
            raise

    async def try_acquire(
        self,
        resource_id: str,
        owner: str,
        *,
        ttl: int = 300,
        mode: str = "exclusive",
        reason: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> AcquireResult:
        """One non-blocking attempt (no lease object, no renewal): the raw procedure."""
        rows = await self._rows(SQL_ACQUIRE, (resource_id, owner, ttl, mode, reason, Jsonb(metadata or {})))
        return AcquireResult(**rows[0])

    async def release(self, resource_id: str, owner: str, fencing_token: int) -> ReleaseResult:
        rows = await self._rows(SQL_RELEASE, (resource_id, owner, fencing_token))
        return ReleaseResult(**rows[0])

    async def renew(self, resource_id: str, owner: str, fencing_token: int, ttl: int) -> RenewResult:
        rows = await self._rows(SQL_RENEW, (resource_id, owner, fencing_token, ttl))
        return RenewResult(**rows[0])

    async def status(self, resource_id: str) -> LockStatus:
        rows = await self._rows(SQL_STATUS, (resource_id,))
        return LockStatus(resource_id=resource_id, **rows[0])

    async def force_release(self, resource_id: str, *, admin: str, reason: str) -> list[str]:
        rows = await self._rows(SQL_FORCE_RELEASE, (resource_id, admin, reason))
        log.warning(
            "lock force-released", extra={"resource_id": resource_id, "admin": admin, "reason": reason}
        )
        return list(rows[0]["holders"])

    async def cleanup_expired(self) -> int:
        return int((await self._rows(SQL_CLEANUP, ()))[0]["expired"])

    async def active_locks(self) -> list[dict[str, Any]]:
        return await self._rows(SQL_ACTIVE, ())

    async def _enqueue(
        self, resource_id: str, owner: str, mode: str, priority: int, wait_seconds: float | None
    ) -> tuple[int, int]:
        pid, generation = await self._listener.ready()
        rows = await self._rows(SQL_ENQUEUE, (resource_id, owner, mode, priority, pid, wait_seconds))
        return int(rows[0]["queue_id"]), generation

    async def _leave_queue(self, queue_id: int) -> None:
        await self._rows(SQL_LEAVE_QUEUE, (queue_id,))


class LockAcquisition:
    """The `async with` of ResourceLockManager.acquire: waits, yields a Lease, releases on every exit."""

    def __init__(
        self,
        manager: ResourceLockManager,
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
        return self.lease

    async def _wait(self, result: AcquireResult, started: float) -> AcquireResult:
        deadline = None if self._wait_timeout is None else started + self._wait_timeout
        queue_id, generation = await self._m._enqueue(
            self.resource_id, self.owner, self.mode, self._priority, self._wait_timeout
        )
        wake = self._m._listener.register(queue_id)
        try:
            while True:
                wake.clear()  # before the attempt: a NOTIFY arriving during it is not lost
                if self._m._listener.generation != generation:  # listener reconnected: new pid
                    self._m._listener.unregister(queue_id)
                    remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
                    queue_id, generation = await self._m._enqueue(
                        self.resource_id, self.owner, self.mode, self._priority, remaining
                    )
                    wake = self._m._listener.register(queue_id)
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
                await asyncio.shield(self._m._leave_queue(queue_id))
            raise
        finally:
            self._m._listener.unregister(queue_id)

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
