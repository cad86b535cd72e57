"""Lock benchmark: uncontended acquire+release against a bare advisory-lock round trip, and handoff latency.

    .venv/bin/python -m support.bench.bench_locks [--iterations 1000] [--handoffs 200]

Runs in a scratch database of its own (created, migrated, dropped) on DEVTOOLS_DATABASE_URL or the
embedded PostgreSQL. Figures are printed for the default (acquisitions commit without waiting for the WAL
flush; safety rests on the fencing token) and again with `devtools.durable_locks = on` set on the scratch
database, the operator's option for acquisitions that wait for the flush.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

import psycopg

from shared import migrations
from shared.backends import resolve_backends
from shared.config import load_settings
from shared.db import with_database
from shared.locks import ResourceLockManager

BARE_ROUND_TRIP = "SELECT pg_try_advisory_xact_lock(%s)"
DURABLE_COMMIT = "UPDATE resource_lock_tokens SET created_at = created_at WHERE resource_id = %s RETURNING 1"


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def _line(name: str, samples: list[float]) -> str:
    p50, p99 = _pct(samples, 0.5), _pct(samples, 0.99)
    return f"  {name:<34} p50 {p50:7.3f} ms   p99 {p99:7.3f} ms   (n={len(samples)})"


async def _timed(n: int, fn: Callable[[int], Awaitable[object]]) -> list[float]:
    samples: list[float] = []
    for i in range(n):
        started = time.perf_counter()
        await fn(i)
        samples.append(time.perf_counter() - started)
    return samples


async def _uncontended(locks: ResourceLockManager, n: int) -> dict[str, list[float]]:
    async def lock_cycle(i: int) -> None:
        async with locks.acquire("bench:uncontended", owner="bench", ttl=30):
            pass

    async def bare(i: int) -> None:
        async with locks.pool.connection() as conn:
            await (await conn.execute(BARE_ROUND_TRIP, (i,))).fetchone()

    async def commit(i: int) -> None:
        async with locks.pool.connection() as conn:
            await (await conn.execute(DURABLE_COMMIT, ("bench:uncontended",))).fetchone()

    await _timed(50, lock_cycle)  # warm-up: plans cached, pool connections established
    await _timed(50, bare)
    results: dict[str, list[float]] = {"lock": [], "bare": [], "commit": []}
    for _ in range(5):  # interleaved blocks, so load changes on the machine hit all three alike
        results["lock"] += await _timed(n // 5, lock_cycle)
        results["bare"] += await _timed(n // 5, bare)
        results["commit"] += await _timed(n // 10, commit)
    return results


async def _handoffs(holder: ResourceLockManager, waiter: ResourceLockManager, n: int) -> list[float]:
    samples: list[float] = []
    for i in range(n):
        released_at = 0.0
        entered: asyncio.Future[float] = asyncio.get_running_loop().create_future()

        async def wait_turn(owner: str, entered: asyncio.Future[float]) -> None:
            async with waiter.acquire("bench:handoff", owner=owner, ttl=30, wait_timeout=10):
                entered.set_result(time.perf_counter())

        async with holder.acquire("bench:handoff", owner=f"holder-{i}", ttl=30):
            task = asyncio.create_task(wait_turn(f"waiter-{i}", entered))
            while (await holder.status("bench:handoff")).waiters < 1:  # noqa: ASYNC110 - queued in the DB
                await asyncio.sleep(0.001)
            released_at = time.perf_counter()
        samples.append(await entered - released_at)
        await task
    return samples


async def _run(url: str, iterations: int, handoffs: int, label: str) -> None:
    locks = await ResourceLockManager.connect(url, max_size=2, name="bench-locks")
    other = await ResourceLockManager.connect(url, max_size=2, name="bench-locks-2")
    try:
        uncontended = await _uncontended(locks, iterations)
        handoff = await _handoffs(locks, other, handoffs)
    finally:
        await locks.close()
        await other.close()
    lock, bare = uncontended["lock"], uncontended["bare"]
    print(f"\n[{label}]")
    print(_line("acquire+release (async with)", lock))
    print(_line("bare pg_try_advisory_xact_lock", bare))
    print(_line("one durable write commit (floor)", uncontended["commit"]))
    print(
        f"  ratio lock/bare                    p50 {_pct(lock, 0.5) / _pct(bare, 0.5):7.1f}x   "
        f"p99 {_pct(lock, 0.99) / _pct(bare, 0.99):7.1f}x   (target <= 3)"
    )
    print(_line("handoff (release -> next holds)", handoff) + "   (target p99 < 20 ms)")
    print(f"  handoff mean {statistics.fmean(handoff) * 1000:.3f} ms")


def main(argv: list[str] | None = None) -> int:
    """Entry point (also called by `python -m support.bench` with no arguments)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--handoffs", type=int, default=200)
    args = parser.parse_args(argv or [])
    asyncio.run(_bench(args.iterations, args.handoffs))
    return 0


async def _bench(iterations: int, handoffs: int) -> None:
    backends = resolve_backends(load_settings())
    scratch = f"devtools_bench_{os.getpid()}"
    with psycopg.connect(backends.database_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{scratch}"')
    url = with_database(backends.database_url, scratch)
    try:
        migrations.upgrade(url)
        print(f"lock benchmark: {iterations} uncontended cycles, {handoffs} handoffs, db {scratch}")
        await _run(url, iterations, handoffs, "default: acquisitions do not wait for the WAL flush")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{scratch}" SET devtools.durable_locks = on')
        await _run(url, iterations, handoffs, "devtools.durable_locks = on: acquisitions wait for the flush")
    finally:
        with psycopg.connect(backends.database_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
