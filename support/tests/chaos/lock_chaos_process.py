"""A separate process for the lock chaos tests: a stress holder pool, a holder to be killed, or a waiter.

    python -m support.tests.chaos.lock_chaos_process stress DB REDIS PREFIX RESOURCE HOLDERS CYCLES TAG
    python -m support.tests.chaos.lock_chaos_process hold DB_URL RESOURCE TTL
    python -m support.tests.chaos.lock_chaos_process wait DB_URL RESOURCE PRIORITY

Each prints one JSON line when it reaches its point of interest, then (hold, wait) blocks to be killed.
"""

from __future__ import annotations

import asyncio
import json
import sys

import redis.asyncio as aioredis

from shared.locks import ResourceLockManager

# The recorder is Redis, not the lock: entering increments `active` (overlap if it was not 0) and checks
# the token is above every token seen before; leaving decrements `active`.
ENTER = """
local n = redis.call('INCR', KEYS[1])
if n > 1 then redis.call('INCR', KEYS[2]) end
local last = tonumber(redis.call('GET', KEYS[3]) or '0')
if tonumber(ARGV[1]) <= last then redis.call('INCR', KEYS[4]) end
redis.call('SET', KEYS[3], ARGV[1])
redis.call('INCR', KEYS[5])
return n
"""


async def stress(
    db_url: str, redis_url: str, prefix: str, resource: str, holders: int, cycles: int, tag: str
) -> None:
    client = aioredis.Redis.from_url(redis_url)
    enter = client.register_script(ENTER)
    keys = [f"{prefix}:{k}" for k in ("active", "overlaps", "last_token", "regressions", "entries")]
    locks = await ResourceLockManager.connect(db_url, max_size=4, name="chaos-stress")

    async def holder(index: int) -> None:
        for _ in range(cycles):
            async with locks.acquire(resource, owner=f"{tag}-h{index}", ttl=30, wait_timeout=60) as lease:
                await enter(keys=keys, args=[lease.fencing_token])
                await asyncio.sleep(0)  # give every other task in this process a chance to barge in
                await client.decr(keys[0])

    try:
        await asyncio.gather(*(holder(i) for i in range(holders)))
    finally:
        await locks.close()
        await client.aclose()
    print(json.dumps({"done": holders * cycles}), flush=True)


async def hold(db_url: str, resource: str, ttl: int) -> None:
    locks = await ResourceLockManager.connect(db_url, max_size=1, name="chaos-holder")
    async with locks.acquire(resource, owner="doomed-holder", ttl=ttl) as lease:
        print(json.dumps({"token": lease.fencing_token}), flush=True)
        await asyncio.Event().wait()


async def wait(db_url: str, resource: str, priority: int) -> None:
    locks = await ResourceLockManager.connect(db_url, max_size=1, name="chaos-waiter")
    print(json.dumps({"waiting": True}), flush=True)
    async with locks.acquire(resource, owner="doomed-waiter", ttl=30, priority=priority):
        print(json.dumps({"acquired": True}), flush=True)
        await asyncio.Event().wait()


def main(argv: list[str]) -> None:
    mode, rest = argv[0], argv[1:]
    if mode == "stress":
        asyncio.run(stress(rest[0], rest[1], rest[2], rest[3], int(rest[4]), int(rest[5]), rest[6]))
    elif mode == "hold":
        asyncio.run(hold(rest[0], rest[1], int(rest[2])))
    elif mode == "wait":
        asyncio.run(wait(rest[0], rest[1], int(rest[2])))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
