"""Fencing of mutating requests against the SQL resource locks (`env:<env>`).

A request carrying `fencing_token` is carried out only when that token is the one the current
holder of the environment's lock holds (asked of the lock table under the environment's file
lock, right before anything changes) and is not lower than the highest token the environment has
seen (state.json). A request without a token is carried out under the `env:<env>` lock taken here
for its duration, fenced with that lease's token; if someone else holds the lock it is refused
at once, since a caller who does not hold the lock must not slip in between a holder's steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from concurrent.futures import TimeoutError as FutureTimeout

import psycopg

from services.infrastructure.errors import (
    EnvironmentLockedError,
    FencingTokenNotHeldError,
    FencingUnavailableError,
)
from services.infrastructure.metrics import FENCING_REFUSALS
from shared.locks import ResourceLockError, ResourceLockManager

log = logging.getLogger(__name__)

LOCK_TTL_SECONDS = 60  # renewed every ttl/3 while the operation runs; a crashed agent frees it soon
VERIFY_TIMEOUT_SECONDS = 15.0


def env_resource(environment: str) -> str:
    """The resource id workflows lock an environment under."""
    return f"env:{environment}"


class EnvironmentLocks:
    def __init__(self, manager: ResourceLockManager, loop: asyncio.AbstractEventLoop, owner: str) -> None:
        self._manager = manager
        self._loop = loop
        self._owner = owner

    @classmethod
    async def connect(cls, database_url: str, *, owner: str) -> EnvironmentLocks:
        manager = await ResourceLockManager.connect(database_url, name="devtools-infrastructure-locks")
        return cls(manager, asyncio.get_running_loop(), owner)

    async def close(self) -> None:
        await self._manager.close()

    async def verify(self, environment: str, token: int) -> None:
        """Refuse a token that is not the live holder's of `env:<environment>`."""
        resource = env_resource(environment)
        try:
            status = await self._manager.status(resource)
        except (psycopg.Error, OSError) as exc:
            FENCING_REFUSALS.labels(reason="unavailable").inc()
            raise FencingUnavailableError(
                f"fencing_token {token} cannot be checked: the lock table is unreachable ({exc})"
            ) from exc
        if not status.locked:
            FENCING_REFUSALS.labels(reason="not_holder").inc()
            raise FencingTokenNotHeldError(
                f"fencing_token {token} is not held: nobody holds {resource} now (last token issued: "
                f"{status.last_token}); send the token of a lock you hold, or no token at all"
            )
        if status.fencing_token != token:
            FENCING_REFUSALS.labels(reason="not_holder").inc()
            raise FencingTokenNotHeldError(
                f"fencing_token {token} is not the current holder's: {resource} is held by "
                f"{status.holder} with token {status.fencing_token}"
            )

    def check_from_thread(self, environment: str, token: int) -> None:
        """verify() for a deploy target running in a worker thread (under the environment's file lock)."""
        future = asyncio.run_coroutine_threadsafe(self.verify(environment, token), self._loop)
        try:
            future.result(timeout=VERIFY_TIMEOUT_SECONDS)
        except FutureTimeout:
            future.cancel()
            FENCING_REFUSALS.labels(reason="unavailable").inc()
            raise FencingUnavailableError(
                f"fencing_token {token} cannot be checked: the lock table did not answer within "
                f"{VERIFY_TIMEOUT_SECONDS:g}s"
            ) from None

    @contextlib.asynccontextmanager
    async def fenced(self, environment: str, token: int | None, *, request_id: str) -> AsyncIterator[int]:
        """The token to fence the operation with: the caller's, or a lease's taken here for its duration."""
        if token is not None:
            yield token
            return
        resource = env_resource(environment)
        async with contextlib.AsyncExitStack() as stack:
            try:
                lease = await stack.enter_async_context(
                    self._manager.acquire(
                        resource,
                        owner=f"{self._owner}:{request_id}",
                        ttl=LOCK_TTL_SECONDS,
                        wait_timeout=0,
                        reason="infrastructure request without fencing_token",
                        # The operation runs in a thread that cannot be cancelled; the file lock and
                        # the token recorded in state.json still order it before any later holder.
                        on_lost="signal",
                    )
                )
            except ResourceLockError as exc:
                FENCING_REFUSALS.labels(reason="locked").inc()
                raise EnvironmentLockedError(
                    f"environment {environment!r} is locked: {resource} is held by "
                    f"{exc.holder or 'another caller'}; send that lock's fencing_token (a request "
                    f"without one runs only while {resource} is free)"
                ) from None
            log.info(
                "environment locked for a request without fencing_token",
                extra={"resource": resource, "fencing_token": lease.fencing_token, "request_id": request_id},
            )
            yield lease.fencing_token
