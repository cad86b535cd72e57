"""Lease-based resource locks over the stored procedures in config/state/010_resource_locks.sql.

    locks = await ResourceLockManager.connect(database_url)
    async with locks.acquire("env:staging", owner="run-123", ttl=60, wait_timeout=30) as lease:
        deploy(fencing_token=lease.fencing_token)
    await locks.close()

Every call is one short autocommit transaction on a pooled connection (safe behind PgBouncer's
transaction pooling). Waiting and holding live in acquisition.py, renewal in lease.py, the NOTIFY
listener in listener.py, the procedures' result rows in results.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from shared.db import open_pool
from shared.locks.acquisition import LockAcquisition
from shared.locks.errors import (
    LockArgumentError,
    argument_error_from,
)
from shared.locks.lease import Lease, OnLost
from shared.locks.listener import LockEventListener
from shared.locks.results import AcquireResult, LockStatus, ReleaseResult, RenewResult

log = logging.getLogger(__name__)

SQL_ACQUIRE = "SELECT * FROM acquire_resource_lock(%s, %s, %s, %s, %s, %s)"
SQL_RELEASE = "SELECT * FROM release_resource_lock(%s, %s, %s)"
SQL_RENEW = "SELECT * FROM renew_resource_lock(%s, %s, %s, %s)"
SQL_STATUS = "SELECT * FROM check_lock_status(%s)"
SQL_FORCE_RELEASE = "SELECT * FROM force_release_lock(%s, %s, %s)"
SQL_SUPERSEDE = "SELECT supersede_lock(%s, %s, %s, %s) AS holders"
SQL_CLEANUP = "SELECT cleanup_expired_locks() AS expired"
SQL_ENQUEUE = "SELECT enqueue_lock_waiter(%s, %s, %s, %s, %s, %s) AS queue_id"
SQL_LEAVE_QUEUE = "SELECT leave_lock_queue(%s) AS left_queue"
SQL_ACTIVE = "SELECT * FROM active_locks_view ORDER BY resource_id, fencing_token"


class ResourceLockManager:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        listener: LockEventListener,
        *,
        owns_pool: bool,
        name: str = "devtools-locks",
        maintenance_interval: float | None = None,
    ) -> None:
        """Use `connect` or `from_pool`, which start the listener and check `maintenance_interval` first."""
        self._pool = pool
        self._listener = listener
        self._owns_pool = owns_pool
        # Leases held through this manager: re-verified at once when the listener had to reconnect, since
        # the server may have restarted and lost a recent (asynchronously committed) acquisition.
        self._held: set[Lease] = set()
        listener.on_reconnect = self._verify_held_leases
        self._maintenance: asyncio.Task[None] | None = None
        if maintenance_interval is not None:
            self._maintenance = asyncio.create_task(
                self._maintain(maintenance_interval), name=f"{name}-maintenance"
            )

    @classmethod
    async def connect(
        cls,
        database_url: str,
        *,
        min_size: int = 1,
        max_size: int = 4,
        name: str = "devtools-locks",
        maintenance_interval: float | None = 60.0,
    ) -> ResourceLockManager:
        """`maintenance_interval`: seconds between `cleanup_expired_locks()` calls (None: never)."""
        pool = await open_pool(database_url, min_size=min_size, max_size=max_size, name=name)
        try:
            return await cls._start(
                pool, database_url, owns_pool=True, name=name, maintenance_interval=maintenance_interval
            )
        except BaseException:
            await pool.close()
            raise

    @classmethod
    async def from_pool(
        cls,
        pool: AsyncConnectionPool,
        *,
        name: str = "devtools-locks",
        maintenance_interval: float | None = 60.0,
    ) -> ResourceLockManager:
        """Share an existing autocommit pool (shared.db.open_pool); the caller keeps closing it."""
        return await cls._start(
            pool, pool.conninfo, owns_pool=False, name=name, maintenance_interval=maintenance_interval
        )

    @classmethod
    async def _start(
        cls,
        pool: AsyncConnectionPool,
        conninfo: str,
        *,
        owns_pool: bool,
        name: str,
        maintenance_interval: float | None,
    ) -> ResourceLockManager:
        if maintenance_interval is not None and maintenance_interval <= 0:
            raise LockArgumentError("maintenance_interval", "invalid maintenance_interval: must be positive")
        listener = LockEventListener(conninfo, name=f"{name}-listener")
        await listener.start()
        return cls(pool, listener, owns_pool=owns_pool, name=name, maintenance_interval=maintenance_interval)

    async def _maintain(self, interval: float) -> None:
        # Housekeeping on a fixed schedule: acquisitions take over expired leases by themselves, but only
        # this records their timeouts promptly and drops queue entries of waiters that died.
        while True:
            await asyncio.sleep(interval)
            try:
                expired = await self.cleanup_expired()
            except (psycopg.Error, OSError) as exc:
                log.warning("lock maintenance failed", extra={"error": str(exc)})
                continue
            if expired:
                log.info("expired leases cleaned up", extra={"expired": expired})

    def _verify_held_leases(self) -> None:
        for lease in list(self._held):
            lease.renew_soon()

    def track_lease(self, lease: Lease) -> None:
        """Re-verify `lease` at once whenever the listener reconnects, until `untrack_lease`."""
        self._held.add(lease)

    def untrack_lease(self, lease: Lease) -> None:
        """Stop re-verifying `lease` on reconnects (it is being released); unknown leases are ignored."""
        self._held.discard(lease)

    @property
    def pool(self) -> AsyncConnectionPool:
        return self._pool

    async def close(self) -> None:
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
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
            self._listener,
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

    async def supersede(self, resource_id: str, *, owner: str, prefix: str, reason: str) -> list[str]:
        """Release `resource_id` in one statement if, and only if, every holder is an exclusive lease
        whose owner starts with `prefix` and is not `owner` (an earlier attempt of the same run);
        returns the holders released (none: nothing to supersede)."""
        rows = await self._rows(SQL_SUPERSEDE, (resource_id, owner, prefix, reason))
        holders = list(rows[0]["holders"] or [])
        if holders:
            log.warning(
                "lock superseded",
                extra={"resource_id": resource_id, "owner": owner, "holders": holders, "reason": reason},
            )
        return holders

    async def cleanup_expired(self) -> int:
        return int((await self._rows(SQL_CLEANUP, ()))[0]["expired"])

    async def active_locks(self) -> list[dict[str, Any]]:
        return await self._rows(SQL_ACTIVE, ())

    async def enqueue_waiter(
        self, resource_id: str, owner: str, mode: str, priority: int, wait_seconds: float | None
    ) -> tuple[int, int]:
        """Join the wait queue under this manager's listening backend: `(queue_id, listener generation)`.

        The entry counts as live only while that backend exists, so the caller must enqueue again once
        the listener's `generation` differs from the one returned (it reconnected under a new pid).
        `wait_seconds` (None: none) sets the entry's deadline, after which it no longer counts.
        """
        pid, generation = await self._listener.ready()
        rows = await self._rows(SQL_ENQUEUE, (resource_id, owner, mode, priority, pid, wait_seconds))
        return int(rows[0]["queue_id"]), generation

    async def leave_queue(self, queue_id: int) -> None:
        """Drop a queue entry of `enqueue_waiter` (waiter gave up); the waiters behind it are notified."""
        await self._rows(SQL_LEAVE_QUEUE, (queue_id,))
