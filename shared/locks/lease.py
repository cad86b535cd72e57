"""A held lock: its fencing token, and the background renewal that keeps it alive while the body runs.

Renewal runs every ttl/3. A renewal the database refuses (force-released, or expired and taken over)
loses the lease at once; renewal *errors* (database unreachable) are retried until the lease's
conservative local expiry passes, then the lease is lost. A lost lease sets `lost`, and by default
cancels the task that holds it, so the body stops touching the resource; the context manager then
raises LeaseLostError in place of the cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Literal

import psycopg

from shared.locks.errors import LeaseLostError
from shared.locks.metrics import LOCK_LEASES_LOST, LOCK_RENEWAL_FAILURES, resource_kind
from shared.locks.results import RenewResult

log = logging.getLogger(__name__)

OnLost = Literal["cancel", "signal"]

# The manager's `renew(resource_id, owner, fencing_token, ttl)`, passed in so a lease needs no manager.
RenewCall = Callable[[str, str, int, int], Awaitable[RenewResult]]


class Lease:
    def __init__(
        self,
        *,
        resource_id: str,
        owner: str,
        fencing_token: int,
        mode: str,
        ttl: int,
        expires_at: datetime,
        renew: RenewCall,
        on_lost: OnLost = "cancel",
        holder_task: asyncio.Task[object] | None = None,
    ) -> None:
        self.resource_id = resource_id
        self.owner = owner
        self.fencing_token = fencing_token
        self.mode = mode
        self.ttl = ttl
        self.expires_at = expires_at
        self.acquired_monotonic = time.monotonic()
        self.renewals = 0
        self.lost_reason: str | None = None
        self._renew = renew
        self._on_lost = on_lost
        self._holder_task = holder_task
        # Conservative: measured from before the request reached the server, so it never outlives the lease.
        self._local_expiry = self.acquired_monotonic + ttl
        self._lost = asyncio.Event()
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._stopped = False
        self.cancelled_for_loss = False

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def check(self) -> None:
        """Raise LeaseLostError if the lease is gone (call before an irreversible step)."""
        if self.lost:
            raise LeaseLostError(
                f"lease on {self.resource_id} lost: {self.lost_reason}",
                resource_id=self.resource_id,
                holder=None,
                expires_at=self.expires_at,
            )

    async def wait_lost(self) -> None:
        await self._lost.wait()

    async def wait_for_renewal(self, count: int = 1) -> bool:
        """Wait until `count` more renewals succeeded; False if the lease was lost first."""
        target = self.renewals + count
        async with self._changed:
            await self._changed.wait_for(lambda: self.renewals >= target or self.lost)
        return not self.lost

    def start_renewal(self) -> None:
        # A timer, not a task: most leases are released long before their first renewal is due, and a
        # timer costs a fraction of a task's create-cancel-await round.
        self._schedule(max(self.ttl / 3, 0.05))

    def renew_soon(self) -> None:
        """Verify the lease with the database now (e.g. after the server restarted), not at the next timer."""
        if self._task is None and not self.lost and not self._stopped:
            if self._timer is not None:
                self._timer.cancel()
            self._schedule(0)

    def _schedule(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(delay, self._start_renewal_task)

    def _start_renewal_task(self) -> None:
        self._timer = None
        if not self._stopped:
            self._task = asyncio.create_task(self._renew_once(), name=f"lease-renew:{self.resource_id}")

    async def stop_renewal(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _renew_once(self) -> None:
        interval = max(self.ttl / 3, 0.05)
        sent = time.monotonic()
        try:
            result = await self._renew(self.resource_id, self.owner, self.fencing_token, self.ttl)
        except (psycopg.Error, OSError) as exc:
            LOCK_RENEWAL_FAILURES.labels(resource_kind(self.resource_id)).inc()
            remaining = self._local_expiry - time.monotonic()
            log.warning(
                "lease renewal failed",
                extra={"resource_id": self.resource_id, "error": str(exc), "remaining_s": remaining},
            )
            self._task = None
            if remaining <= 0:
                await self._mark_lost(f"renewal failed until the lease expired: {exc}")
                return
            self._schedule(min(interval / 2, remaining / 2, 1.0))
            return
        self._task = None
        if not result.renewed:
            LOCK_RENEWAL_FAILURES.labels(resource_kind(self.resource_id)).inc()
            await self._mark_lost(result.message)
            return
        self.expires_at = result.expires_at or self.expires_at
        self._local_expiry = sent + self.ttl
        async with self._changed:
            self.renewals += 1
            self._changed.notify_all()
        if not self._stopped:
            self._schedule(interval)

    async def _mark_lost(self, reason: str) -> None:
        self.lost_reason = reason
        self._lost.set()
        LOCK_LEASES_LOST.labels(resource_kind(self.resource_id)).inc()
        log.error(
            "lease lost", extra={"resource_id": self.resource_id, "owner": self.owner, "reason": reason}
        )
        async with self._changed:
            self._changed.notify_all()
        task = self._holder_task
        if self._on_lost == "cancel" and task is not None and not task.done():
            self.cancelled_for_loss = True
            task.cancel(msg=f"lease on {self.resource_id} lost")
