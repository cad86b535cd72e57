"""Resource locks against a real PostgreSQL: the procedures, and the ResourceLockManager on top."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import psycopg
import pytest
from prometheus_client import REGISTRY

from shared.locks import LeaseLostError, LockArgumentError, ResourceLockError, ResourceLockManager

pytestmark = pytest.mark.integration


@pytest.fixture
async def locks(database_url: str) -> AsyncIterator[ResourceLockManager]:
    manager = await ResourceLockManager.connect(database_url, max_size=4, name="test-locks")
    yield manager
    await manager.close()


@pytest.fixture
async def other_locks(database_url: str) -> AsyncIterator[ResourceLockManager]:
    """A second manager: its own pool and listener, as another process would have."""
    manager = await ResourceLockManager.connect(database_url, max_size=2, name="test-locks-2")
    yield manager
    await manager.close()


async def _wait_queued(locks: ResourceLockManager, resource_id: str, count: int) -> None:
    """Until `count` waiters are queued (the queue is external state written by other tasks)."""
    async with asyncio.timeout(10):
        while (await locks.status(resource_id)).waiters < count:  # noqa: ASYNC110 - external state, no event
            await asyncio.sleep(0.005)


async def test_exclusive_lock_excludes_and_release_frees(locks: ResourceLockManager) -> None:
    first = await locks.try_acquire("env:staging", "a", ttl=30)
    second = await locks.try_acquire("env:staging", "b", ttl=30)
    assert first.acquired and first.fencing_token is not None
    assert not second.acquired and second.holder == "a" and second.expires_at == first.expires_at
    assert (await locks.release("env:staging", "a", first.fencing_token)).released
    third = await locks.try_acquire("env:staging", "b", ttl=30)
    assert third.acquired and third.fencing_token is not None and third.fencing_token > first.fencing_token


async def test_same_owner_acquiring_again_renews_with_the_same_token(locks: ResourceLockManager) -> None:
    first = await locks.try_acquire("repo:renew", "a", ttl=5)
    again = await locks.try_acquire("repo:renew", "a", ttl=60)
    assert again.acquired and again.fencing_token == first.fencing_token
    assert again.expires_at is not None and first.expires_at is not None
    assert again.expires_at > first.expires_at


async def test_stale_token_or_non_holder_cannot_release(locks: ResourceLockManager) -> None:
    old = await locks.try_acquire("repo:stale", "a", ttl=30)
    assert old.fencing_token is not None
    await locks.force_release("repo:stale", admin="ops", reason="test")
    new = await locks.try_acquire("repo:stale", "a", ttl=30)
    assert new.fencing_token is not None and new.fencing_token > old.fencing_token
    stale = await locks.release("repo:stale", "a", old.fencing_token)
    assert not stale.released and "a (token" in stale.message
    intruder = await locks.release("repo:stale", "mallory", new.fencing_token)
    assert not intruder.released and intruder.holder is not None and intruder.holder.startswith("a ")
    assert (await locks.status("repo:stale")).holder == "a"
    renew_stale = await locks.renew("repo:stale", "a", old.fencing_token, 30)
    assert not renew_stale.renewed


async def test_shared_holders_coexist_and_exclude_exclusive(locks: ResourceLockManager) -> None:
    r1 = await locks.try_acquire("env:shared", "reader-1", ttl=30, mode="shared")
    r2 = await locks.try_acquire("env:shared", "reader-2", ttl=30, mode="shared")
    writer = await locks.try_acquire("env:shared", "writer", ttl=30, mode="exclusive")
    assert r1.acquired and r2.acquired and not writer.acquired
    assert r1.fencing_token is not None and r2.fencing_token is not None
    assert r2.fencing_token > r1.fencing_token
    status = await locks.status("env:shared")
    assert status.mode == "shared" and sorted(status.owners) == ["reader-1", "reader-2"]
    await locks.release("env:shared", "reader-1", r1.fencing_token)
    assert not (await locks.try_acquire("env:shared", "writer", ttl=30)).acquired
    await locks.release("env:shared", "reader-2", r2.fencing_token)
    w = await locks.try_acquire("env:shared", "writer", ttl=30)
    assert w.acquired
    assert not (await locks.try_acquire("env:shared", "reader-3", ttl=30, mode="shared")).acquired


async def test_expired_lease_is_taken_over_with_a_larger_token(locks: ResourceLockManager) -> None:
    dead = await locks.try_acquire("env:expire", "dead", ttl=1)
    assert dead.fencing_token is not None
    async with locks.acquire("env:expire", owner="next", ttl=30, wait_timeout=10) as lease:
        assert lease.fencing_token > dead.fencing_token
    assert not (await locks.release("env:expire", "dead", dead.fencing_token)).released


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"resource_id": "", "owner": "a"}, "resource_id"),
        ({"resource_id": "env:x", "owner": "  "}, "owner"),
        ({"resource_id": "env:x", "owner": "a", "ttl": 0}, "ttl_seconds"),
        ({"resource_id": "env:x", "owner": "a", "ttl": -5}, "ttl_seconds"),
        ({"resource_id": "env:x", "owner": "a", "mode": "sharable"}, "mode"),
    ],
)
async def test_bad_arguments_raise_errors_naming_the_argument(
    locks: ResourceLockManager, kwargs: dict[str, object], argument: str
) -> None:
    resource_id = str(kwargs.pop("resource_id"))
    owner = str(kwargs.pop("owner"))
    with pytest.raises(LockArgumentError) as raw:
        await locks.try_acquire(resource_id, owner, **kwargs)  # type: ignore[arg-type]
    assert raw.value.argument == argument and argument in str(raw.value)
    with pytest.raises(LockArgumentError) as managed:
        async with locks.acquire(resource_id, owner=owner, **kwargs):  # type: ignore[arg-type]
            pytest.fail("must not enter")
    assert managed.value.argument == argument
    assert isinstance(managed.value, ValueError)


async def test_procedure_raises_a_distinct_sqlstate(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as exc:
            await conn.execute("SELECT * FROM acquire_resource_lock('env:x', 'a', 10, 'bogus')")
    assert exc.value.sqlstate == "DL001" and exc.value.diag.column_name == "mode"


async def test_force_release_requires_a_reason(locks: ResourceLockManager) -> None:
    with pytest.raises(LockArgumentError) as exc:
        await locks.force_release("env:x", admin="ops", reason="")
    assert exc.value.argument == "reason"


async def test_timeout_names_holder_and_expiry(
    locks: ResourceLockManager, other_locks: ResourceLockManager
) -> None:
    async with locks.acquire("env:busy", owner="deployer-1", ttl=30) as lease:
        with pytest.raises(ResourceLockError) as exc:
            async with other_locks.acquire("env:busy", owner="deployer-2", wait_timeout=0.2):
                pytest.fail("must not enter")
        assert exc.value.holder == "deployer-1" and exc.value.expires_at == lease.expires_at
        assert "deployer-1" in str(exc.value) and lease.expires_at.isoformat() in str(exc.value)
        assert (await locks.status("env:busy")).waiters == 0  # the timed-out waiter left the queue


async def test_release_on_exception_and_on_cancellation(locks: ResourceLockManager) -> None:
    with pytest.raises(RuntimeError):
        async with locks.acquire("env:exc", owner="a", ttl=30):
            raise RuntimeError("deploy failed")
    assert not (await locks.status("env:exc")).locked

    entered = asyncio.Event()

    async def holder() -> None:
        async with locks.acquire("env:cancel", owner="a", ttl=30):
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(holder())
    await entered.wait()
    assert (await locks.status("env:cancel")).locked
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not (await locks.status("env:cancel")).locked


async def test_cancelled_waiter_leaves_the_queue(
    locks: ResourceLockManager, other_locks: ResourceLockManager
) -> None:
    async with locks.acquire("env:q-cancel", owner="holder", ttl=30):
        waiter = asyncio.create_task(_enter_and_record(other_locks, "env:q-cancel", "w", []))
        await _wait_queued(locks, "env:q-cancel", 1)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert (await locks.status("env:q-cancel")).waiters == 0
    assert not (await locks.status("env:q-cancel")).locked


async def _enter_and_record(
    locks: ResourceLockManager,
    resource_id: str,
    owner: str,
    order: list[str],
    priority: int = 0,
    recheck_interval: float = 2.0,
) -> None:
    async with locks.acquire(
        resource_id,
        owner=owner,
        ttl=30,
        wait_timeout=20,
        priority=priority,
        recheck_interval=recheck_interval,
    ):
        order.append(owner)


async def test_waiters_are_served_by_priority_then_fifo(
    locks: ResourceLockManager, other_locks: ResourceLockManager
) -> None:
    order: list[str] = []
    tasks: list[asyncio.Task[None]] = []
    async with locks.acquire("env:queue", owner="holder", ttl=30):
        # Alternate managers so the wake-ups cross listener connections, as across processes.
        for i, (name, priority) in enumerate([("low-1", 0), ("low-2", 0), ("high", 5), ("low-3", 0)]):
            manager = locks if i % 2 else other_locks
            tasks.append(asyncio.create_task(_enter_and_record(manager, "env:queue", name, order, priority)))
            await _wait_queued(locks, "env:queue", i + 1)
    await asyncio.gather(*tasks)
    assert order == ["high", "low-1", "low-2", "low-3"]


async def test_free_lock_is_not_taken_past_a_live_waiter(
    locks: ResourceLockManager, database_url: str
) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as waiter_conn:
        cur = await waiter_conn.execute(
            "SELECT enqueue_lock_waiter('env:barge', 'queued', 'exclusive', 0, pg_backend_pid(), NULL)"
        )
        assert (await cur.fetchone()) is not None
        late = await locks.try_acquire("env:barge", "barger", ttl=30)
        assert not late.acquired and "queued waits ahead" in late.message
        assert (await locks.try_acquire("env:barge", "queued", ttl=30)).acquired
    # A waiter whose listening backend is gone does not block the queue.
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as gone_conn:
        await gone_conn.execute(
            "SELECT enqueue_lock_waiter('env:barge2', 'ghost', 'exclusive', 9, pg_backend_pid(), NULL)"
        )
    async with asyncio.timeout(10):  # the closed backend disappears from pg_stat_activity shortly after
        while not (result := await locks.try_acquire("env:barge2", "alive", ttl=30)).acquired:  # noqa: ASYNC110 - external state, no event
            await asyncio.sleep(0.02)
    assert result.holder == "alive"


async def test_waiter_is_woken_by_release_without_waiting_for_expiry(
    locks: ResourceLockManager, other_locks: ResourceLockManager
) -> None:
    order: list[str] = []
    async with locks.acquire("env:wake", owner="holder", ttl=600):
        # No safety re-check for an hour and a 600 s lease: nothing but the release's NOTIFY can wake it
        # before the 20 s wait_timeout, which would raise instead of recording the entry.
        task = asyncio.create_task(
            _enter_and_record(other_locks, "env:wake", "w", order, recheck_interval=3600)
        )
        await _wait_queued(locks, "env:wake", 1)
    await task
    assert order == ["w"]


async def test_lease_renews_itself_while_held(locks: ResourceLockManager) -> None:
    async with locks.acquire("env:renew", owner="long", ttl=1) as lease:
        first_expiry = lease.expires_at
        assert await lease.wait_for_renewal(3)  # > 1 s held on a 1 s TTL
        assert lease.expires_at > first_expiry
        status = await locks.status("env:renew")
        assert status.holder == "long" and status.fencing_token == lease.fencing_token
        lease.check()


async def test_lost_lease_cancels_the_body_and_raises(locks: ResourceLockManager) -> None:
    with pytest.raises(LeaseLostError) as exc:
        async with locks.acquire("env:lost", owner="victim", ttl=1) as lease:
            await locks.force_release("env:lost", admin="ops", reason="stuck deploy")
            await asyncio.Event().wait()  # only the lease loss ends this
    assert exc.value.resource_id == "env:lost"
    assert lease.lost and "no longer holds" in (lease.lost_reason or "")


async def test_lost_lease_signals_when_asked_not_to_cancel(locks: ResourceLockManager) -> None:
    async with locks.acquire("env:lost2", owner="victim", ttl=1, on_lost="signal") as lease:
        await locks.force_release("env:lost2", admin="ops", reason="test")
        await lease.wait_lost()
        with pytest.raises(LeaseLostError):
            lease.check()


async def test_views_and_history_record_the_lifecycle(locks: ResourceLockManager, database_url: str) -> None:
    async with locks.acquire("repo:views", owner="a", ttl=30, reason="deploy 1.2") as lease:
        active = [row for row in await locks.active_locks() if row["resource_id"] == "repo:views"]
        assert active[0]["owner"] == "a" and active[0]["reason"] == "deploy 1.2"
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT action, fencing_token, hold_seconds FROM lock_history WHERE resource_id = 'repo:views' "
            "ORDER BY id"
        )
        history = await cur.fetchall()
        stats = await (
            await conn.execute(
                "SELECT acquisitions, releases FROM lock_statistics_view WHERE resource_id = 'repo:views'"
            )
        ).fetchone()
        for view in ("lock_contention_view", "wait_queue_view"):
            await conn.execute(f"SELECT * FROM {view}")
    assert [h[0] for h in history] == ["acquire", "release"]
    assert history[1][1] == lease.fencing_token and history[1][2] is not None and history[1][2] >= 0
    assert stats == (1, 1)


async def test_cleanup_expires_leases_and_records_timeouts(
    locks: ResourceLockManager, database_url: str
) -> None:
    dead = await locks.try_acquire("env:cleanup", "dead", ttl=300)
    assert dead.acquired
    # A holder that died long ago: its lease ran out on the server's clock (moved there, not waited for).
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "UPDATE resource_locks SET expires_at = clock_timestamp() - interval '1 second' "
            "WHERE resource_id = 'env:cleanup'"
        )
    assert not (await locks.status("env:cleanup")).locked
    assert await locks.cleanup_expired() >= 1
    assert (await locks.status("env:cleanup")).last_token == dead.fencing_token


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_metrics_count_acquisitions_contention_timeouts_and_active_leases(
    locks: ResourceLockManager, other_locks: ResourceLockManager
) -> None:
    kind = {"resource_kind": "metrics"}
    before = {
        "acquired": _sample("devtools_lock_acquisitions_total", **kind, mode="exclusive"),
        "contended": _sample("devtools_lock_contentions_total", **kind),
        "timeouts": _sample("devtools_lock_timeouts_total", **kind),
        "holds": _sample("devtools_lock_hold_seconds_count", **kind),
    }
    async with locks.acquire("metrics:a", owner="m1", ttl=30):
        assert _sample("devtools_lock_active_leases", **kind) >= 1
        with pytest.raises(ResourceLockError):
            async with other_locks.acquire("metrics:a", owner="m2", ttl=30, wait_timeout=0.2):
                pass
    assert _sample("devtools_lock_acquisitions_total", **kind, mode="exclusive") == before["acquired"] + 1
    assert _sample("devtools_lock_contentions_total", **kind) == before["contended"] + 1
    assert _sample("devtools_lock_timeouts_total", **kind) == before["timeouts"] + 1
    assert _sample("devtools_lock_hold_seconds_count", **kind) == before["holds"] + 1
