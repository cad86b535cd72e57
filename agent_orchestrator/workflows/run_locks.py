"""Resource locks a workflow step holds: owned per run *attempt*, so a resumed attempt fences out the last.

A run whose worker died (or stalled past its run lease) is resumed by another worker as a new attempt.
If the dead attempt held `env:staging` at that moment, its lease would otherwise keep the environment
locked until its TTL, and with the run id as owner the new attempt would simply renew it and reuse its
fencing token, which then could not tell the stale executor from the live one. Owning locks as
`run:<id>:<attempt>` and force-releasing a lease of an earlier attempt of the same run gives the new
attempt a larger token at once: the stale executor's renewals fail (its body is cancelled) and any
request it still sends with its old token is refused by the agents that check tokens.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from agent_orchestrator.runs.context import current_run
from shared.locks import Lease, ResourceLockManager


def lock_owner(run_id: str, attempt: int) -> str:
    return f"run:{run_id}:{attempt}"


async def supersede_earlier_attempts(locks: ResourceLockManager, resource_id: str, owner: str) -> bool:
    """Release `resource_id` when an earlier attempt of the same run holds it exclusively: checked and
    released in one statement (config/state/097_lock_supersede.sql), so a lease another run took in
    between is never touched."""
    run_prefix = owner.rsplit(":", 1)[0] + ":"
    released = await locks.supersede(
        resource_id,
        owner=owner,
        prefix=run_prefix,
        reason=f"superseded by {owner}: the earlier attempt lost its run lease",
    )
    return bool(released)


@asynccontextmanager
async def attempt_lock(
    locks: ResourceLockManager,
    resource_id: str,
    *,
    run_id: str,
    attempt: int,
    ttl: int,
    wait_timeout: float | None,
    reason: str,
) -> AsyncIterator[Lease]:
    owner = lock_owner(run_id, attempt)
    await supersede_earlier_attempts(locks, resource_id, owner)
    async with locks.acquire(
        resource_id, owner=owner, ttl=ttl, wait_timeout=wait_timeout, reason=reason
    ) as lease:
        yield lease


def run_lock(
    locks: ResourceLockManager, resource_id: str, *, ttl: int, wait_timeout: float | None, reason: str
) -> AbstractAsyncContextManager[Lease]:
    """`async with run_lock(...)` inside a workflow node: the lock of the current run attempt."""
    run = current_run()
    return attempt_lock(
        locks,
        resource_id,
        run_id=str(run.run_id),
        attempt=run.attempt,
        ttl=ttl,
        wait_timeout=wait_timeout,
        reason=reason,
    )
