"""The uncontended fast path of the lock procedures (050_lock_fast_path.sql) and what keeps it safe:
acquisitions commit without waiting for the WAL flush unless the operator asks for durable locks, and a
lease lost with the server is noticed as soon as the manager's listener reconnects."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import psycopg
import pytest

from shared.locks import LeaseLostError, LockArgumentError, ResourceLockManager

pytestmark = pytest.mark.integration


@pytest.fixture
async def locks(database_url: str) -> AsyncIterator[ResourceLockManager]:
    manager = await ResourceLockManager.connect(database_url, max_size=4, name="test-locks-fast")
    yield manager
    await manager.close()


async def _commit_mode_after_acquire(database_url: str, durable: bool) -> str:
    """synchronous_commit as the acquisition's own transaction would commit with it."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:  # one explicit transaction
        if durable:
            await conn.execute("SET devtools.durable_locks = on")
        cur = await conn.execute("SELECT * FROM acquire_resource_lock('env:commit', 'c', 30)")
        row = await cur.fetchone()
        assert row is not None and row[0] is True
        mode = await (await conn.execute("SHOW synchronous_commit")).fetchone()
        await conn.rollback()
    assert mode is not None
    return str(mode[0])


async def test_acquisitions_skip_the_flush_wait_unless_durable_locks_is_set(database_url: str) -> None:
    assert await _commit_mode_after_acquire(database_url, durable=False) == "off"
    assert await _commit_mode_after_acquire(database_url, durable=True) == "on"


async def test_fast_and_general_paths_keep_tokens_increasing_and_history_complete(
    locks: ResourceLockManager, database_url: str
) -> None:
    tokens: list[int] = []
    for i in range(5):  # the first use of a resource takes the general path, the rest the fast one
        async with locks.acquire("env:fast", owner=f"o{i}", ttl=30) as lease:
            tokens.append(lease.fencing_token)
    assert tokens == sorted(set(tokens))
    # A stale token and a foreign owner still get the general path's answer naming the real holder.
    held = await locks.try_acquire("env:fast", "holder", ttl=30)
    stale = await locks.release("env:fast", "holder", tokens[0])
    assert not stale.released and "held by holder" in stale.message
    assert (await locks.release("env:fast", "holder", held.fencing_token or 0)).released
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT action, count(*) FROM lock_history WHERE resource_id = 'env:fast' GROUP BY action"
        )
        counts = dict(await cur.fetchall())
    assert counts == {"acquire": 6, "release": 6}


async def test_a_lease_lost_with_the_server_is_noticed_when_the_listener_reconnects(
    locks: ResourceLockManager, database_url: str
) -> None:
    with pytest.raises(LeaseLostError):
        async with locks.acquire("env:crash", owner="survivor", ttl=600) as lease:  # renewal due in 200 s
            async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
                # What a server crash does to an acquisition whose commit was not yet flushed: the row
                # is gone, and every connection of the manager (its listener too) is cut.
                await conn.execute("DELETE FROM resource_locks WHERE resource_id = 'env:crash'")
                await conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'test-locks-fast-listener'"
                )
            await asyncio.wait_for(lease.wait_lost(), timeout=60)  # hang guard only; 200 s without the fix
            await asyncio.Event().wait()  # the loss cancels the body
    assert lease.lost and "no longer holds" in (lease.lost_reason or "")


async def test_maintenance_records_timeouts_of_dead_holders_without_any_acquire(database_url: str) -> None:
    async with await ResourceLockManager.connect(
        database_url, max_size=2, name="test-locks-maint", maintenance_interval=0.05
    ) as manager:
        dead = await manager.try_acquire("env:maint", "dead", ttl=300)
        assert dead.acquired
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await conn.execute(  # its holder died long ago: the lease ran out on the server's clock
                "UPDATE resource_locks SET expires_at = clock_timestamp() - interval '1 second' "
                "WHERE resource_id = 'env:maint'"
            )
            async with asyncio.timeout(30):
                while True:  # the scheduled cleanup is external to this task: watch its effect
                    cur = await conn.execute(
                        "SELECT count(*) FROM lock_history "
                        "WHERE resource_id = 'env:maint' AND action = 'timeout'"
                    )
                    row = await cur.fetchone()
                    if row is not None and row[0] == 1:
                        break
                    await asyncio.sleep(0.05)
            cur = await conn.execute("SELECT count(*) FROM resource_locks WHERE resource_id = 'env:maint'")
            assert (await cur.fetchone()) == (0,)


async def test_maintenance_interval_must_be_positive(database_url: str) -> None:
    with pytest.raises(LockArgumentError, match="maintenance_interval"):
        await ResourceLockManager.connect(database_url, max_size=1, maintenance_interval=0)
