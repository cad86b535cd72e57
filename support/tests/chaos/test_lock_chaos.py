"""Lock chaos: many holders in several processes, killed holders and waiters, terminated connections."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from shared.locks import ResourceLockManager

pytestmark = pytest.mark.chaos

REPO_ROOT = Path(__file__).resolve().parents[3]
WORKER = "support.tests.chaos.lock_chaos_process"
REQUEUED_ALIVE = "SELECT 1 FROM wait_queue_view WHERE resource_id = 'env:listener' AND alive"


@pytest.fixture
async def locks(database_url: str) -> AsyncIterator[ResourceLockManager]:
    manager = await ResourceLockManager.connect(database_url, max_size=2, name="chaos-test")
    yield manager
    await manager.close()


@pytest.fixture
def spawn() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def _start(procs: list[subprocess.Popen[str]], *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", WORKER, *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    procs.append(proc)
    return proc


async def _read_json(proc: subprocess.Popen[str]) -> dict[str, object]:
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout=60)
    assert line, f"worker exited with {proc.poll()} before reporting"
    return json.loads(line)


async def _sql(database_url: str, sql: str) -> list[tuple[object, ...]]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(sql)
        return await cur.fetchall() if cur.description else []


async def test_no_two_exclusive_holders_overlap_across_processes(
    database_url: str, redis_url: str, redis_prefix: str, spawn: list[subprocess.Popen[str]]
) -> None:
    # This test checks mutual exclusion, not durability: skip the WAL flush per acquisition to keep it short.
    dbname = database_url.rsplit("/", 1)[1].split("?")[0]
    await _sql(database_url, f'ALTER DATABASE "{dbname}" SET synchronous_commit = off')
    processes, holders, cycles = 2, 8, 125  # 16 holders, 2000 acquire/critical-section/release cycles
    procs = [
        _start(
            spawn,
            "stress",
            database_url,
            redis_url,
            redis_prefix,
            "env:stress",
            str(holders),
            str(cycles),
            f"proc{i}",
        )
        for i in range(processes)
    ]
    results = [await _read_json(proc) for proc in procs]
    assert [proc.wait(timeout=60) for proc in procs] == [0] * processes
    assert sum(int(r["done"]) for r in results) == processes * holders * cycles  # type: ignore[call-overload]

    recorder = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        counts = {
            k: recorder.get(f"{redis_prefix}:{k}") for k in ("entries", "overlaps", "regressions", "active")
        }
    finally:
        recorder.close()
    assert counts == {
        "entries": str(processes * holders * cycles),
        "overlaps": None,
        "regressions": None,
        "active": "0",
    }
    tokens = [
        row[0]
        for row in await _sql(
            database_url,
            "SELECT fencing_token FROM lock_history "
            "WHERE resource_id = 'env:stress' AND action = 'acquire' ORDER BY id",
        )
    ]
    assert len(tokens) == processes * holders * cycles
    assert all(a < b for a, b in itertools.pairwise(tokens))


async def test_killed_holder_loses_the_lock_at_its_ttl(
    database_url: str, locks: ResourceLockManager, spawn: list[subprocess.Popen[str]]
) -> None:
    holder = _start(spawn, "hold", database_url, "env:killed", "2")
    dead_token = int((await _read_json(holder))["token"])  # type: ignore[call-overload]
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    assert (await locks.status("env:killed")).holder == "doomed-holder"
    async with locks.acquire("env:killed", owner="survivor", ttl=30, wait_timeout=20) as lease:
        assert lease.fencing_token > dead_token
    actions = await _sql(
        database_url,
        "SELECT action FROM lock_history WHERE resource_id = 'env:killed' AND owner = 'doomed-holder'",
    )
    assert ("timeout",) in actions


async def test_killed_waiter_does_not_block_the_queue(
    database_url: str, locks: ResourceLockManager, spawn: list[subprocess.Popen[str]]
) -> None:
    other = await ResourceLockManager.connect(database_url, max_size=1, name="chaos-test-2")
    try:
        async with locks.acquire("env:dead-waiter", owner="holder", ttl=600):
            waiter = _start(spawn, "wait", database_url, "env:dead-waiter", "10")  # would be served first
            await _read_json(waiter)
            async with asyncio.timeout(30):
                while (await locks.status("env:dead-waiter")).waiters < 1:  # noqa: ASYNC110 - external state, no event
                    await asyncio.sleep(0.02)
            mine = asyncio.create_task(_hold_briefly(other, "env:dead-waiter"))
            async with asyncio.timeout(30):
                while (await locks.status("env:dead-waiter")).waiters < 2:  # noqa: ASYNC110 - external state, no event
                    await asyncio.sleep(0.02)
            waiter.send_signal(signal.SIGKILL)
            waiter.wait(timeout=10)
        assert await asyncio.wait_for(mine, timeout=10) == "live-waiter"
    finally:
        await other.close()


async def _hold_briefly(locks: ResourceLockManager, resource_id: str) -> str:
    async with locks.acquire(resource_id, owner="live-waiter", ttl=30, wait_timeout=20) as lease:
        return lease.owner


async def test_terminated_connection_leaves_nothing_locked_forever(
    database_url: str, locks: ResourceLockManager
) -> None:
    conn = await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, application_name="doomed-conn"
    )
    cur = await conn.execute(
        "SELECT fencing_token, pg_backend_pid() FROM acquire_resource_lock('env:term', 'doomed', 2)"
    )
    token, pid = await cur.fetchone()  # type: ignore[misc]
    await _sql(database_url, f"SELECT pg_terminate_backend({int(pid)})")
    await conn.close()
    async with locks.acquire("env:term", owner="next", ttl=30, wait_timeout=20) as lease:
        assert lease.fencing_token > token


async def test_live_holder_keeps_its_lease_when_its_connections_are_terminated(
    database_url: str, locks: ResourceLockManager
) -> None:
    async with locks.acquire("env:reconnect", owner="steady", ttl=1) as lease:
        await _sql(
            database_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name LIKE 'chaos-test%'",
        )
        assert await lease.wait_for_renewal(3)  # renewal survives on fresh pooled connections
        assert not lease.lost
    assert not (await locks.status("env:reconnect")).locked


async def test_waiter_survives_its_listener_connection_being_terminated(
    database_url: str, locks: ResourceLockManager
) -> None:
    waiter_locks = await ResourceLockManager.connect(database_url, max_size=1, name="chaos-listen")
    try:
        async with locks.acquire("env:listener", owner="holder", ttl=600):
            task = asyncio.create_task(_hold_briefly(waiter_locks, "env:listener"))
            async with asyncio.timeout(10):
                while (await locks.status("env:listener")).waiters < 1:  # noqa: ASYNC110 - external state, no event
                    await asyncio.sleep(0.01)
            await _sql(
                database_url,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'chaos-listen-listener'",
            )
            async with asyncio.timeout(10):  # it reconnects and re-registers under its new backend
                while not await _sql(database_url, REQUEUED_ALIVE):  # noqa: ASYNC110 - external state
                    await asyncio.sleep(0.01)
        assert await asyncio.wait_for(task, timeout=10) == "live-waiter"
    finally:
        await waiter_locks.close()
