"""Locks of a run attempt: a resumed attempt takes over the lease of the attempt it replaces, with a new
fencing token, and never touches another run's lease."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from agent_orchestrator.workflows.run_locks import attempt_lock, lock_owner
from shared.locks import ResourceLockError, ResourceLockManager

pytestmark = pytest.mark.integration


@pytest.fixture
async def locks(database_url: str) -> AsyncIterator[ResourceLockManager]:
    manager = await ResourceLockManager.connect(database_url, max_size=2, name="test-run-locks")
    yield manager
    await manager.close()


async def test_a_resumed_attempt_fences_out_the_attempt_it_replaces(locks: ResourceLockManager) -> None:
    stale = await locks.try_acquire("env:resume", lock_owner("r1", 1), ttl=600)  # died holding it
    assert stale.acquired and stale.fencing_token is not None
    async with attempt_lock(
        locks, "env:resume", run_id="r1", attempt=2, ttl=60, wait_timeout=0, reason="deploy"
    ) as lease:
        assert lease.owner == "run:r1:2" and lease.fencing_token > stale.fencing_token
        status = await locks.status("env:resume")
        assert status.holder == "run:r1:2" and status.fencing_token == lease.fencing_token
        # The stale executor can neither renew nor release what it held.
        assert not (await locks.renew("env:resume", "run:r1:1", stale.fencing_token, 60)).renewed
        assert not (await locks.release("env:resume", "run:r1:1", stale.fencing_token)).released
    assert not (await locks.status("env:resume")).locked


async def test_another_runs_lease_is_never_taken_over(locks: ResourceLockManager) -> None:
    other = await locks.try_acquire("env:busy", lock_owner("r2", 1), ttl=600)
    assert other.acquired
    with pytest.raises(ResourceLockError) as exc:
        async with attempt_lock(
            locks, "env:busy", run_id="r3", attempt=2, ttl=60, wait_timeout=0, reason="deploy"
        ):
            pass
    assert exc.value.holder == "run:r2:1"
    assert (await locks.status("env:busy")).fencing_token == other.fencing_token


async def test_a_run_id_that_prefixes_another_is_not_mistaken_for_it(locks: ResourceLockManager) -> None:
    other = await locks.try_acquire("env:prefix", lock_owner("r4-b", 1), ttl=600)
    assert other.acquired
    with pytest.raises(ResourceLockError):
        async with attempt_lock(
            locks, "env:prefix", run_id="r4", attempt=2, ttl=60, wait_timeout=0, reason="deploy"
        ):
            pass


async def test_supersede_checks_and_releases_in_one_statement(locks: ResourceLockManager) -> None:
    earlier = await locks.try_acquire("env:one", lock_owner("r5", 1), ttl=600)
    assert earlier.acquired
    # The attempt itself, or another run, is never superseded; a wrong prefix is refused.
    assert await locks.supersede("env:one", owner="run:r5:1", prefix="run:r5:", reason="r") == []
    assert await locks.supersede("env:one", owner="run:r6:2", prefix="run:r6:", reason="r") == []
    with pytest.raises(Exception, match="run_prefix"):
        await locks.supersede("env:one", owner="run:r5:2", prefix="run:r6:", reason="r")
    assert (await locks.status("env:one")).holder == "run:r5:1"
    released = await locks.supersede("env:one", owner="run:r5:2", prefix="run:r5:", reason="resumed")
    assert released == ["run:r5:1"] and not (await locks.status("env:one")).locked
    # Nothing held: nothing to supersede, and the history says who superseded whom.
    assert await locks.supersede("env:one", owner="run:r5:2", prefix="run:r5:", reason="r") == []
    shared = await locks.try_acquire("env:shared", "run:r7:1", ttl=600, mode="shared")
    assert shared.acquired
    assert await locks.supersede("env:shared", owner="run:r7:2", prefix="run:r7:", reason="r") == []
