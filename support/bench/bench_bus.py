"""Event bus benchmark: echo request/response between two processes vs a bare Redis Streams round trip.

    .venv/bin/python -m support.bench.bench_bus [--requests 1500] [--seconds 5] [--inflight 64]

Uses DEVTOOLS_REDIS_URL (or the embedded Redis). Measures a bare XADD -> XREADGROUP -> XADD round
trip first (the floor any Streams-based bus pays), then the bus: p50/p99 of sequential round trips
and the sustained requests/s with many requests in flight, for each, and the bus/bare ratio of all three.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from shared.bus import AgentRequestEvent, EventBus, ResponseStatus
from shared.config import load_settings
from shared.embedded import embedded_servers

BARE_GROUP = "bench"


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


async def start_child(*args: str) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    assert process.stdout is not None
    async with asyncio.timeout(30):
        line = await process.stdout.readline()
    if line.strip() != b"ready":
        raise RuntimeError(f"benchmark worker failed to start: {line!r}")
    return process


async def stop_child(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        async with asyncio.timeout(10):
            await process.wait()


# -- bare Redis Streams round trip -----------------------------------------------------------------


async def bare_worker(redis_url: str, prefix: str) -> None:
    """Echo loop: XREADGROUP a request, XADD the reply to the stream it names, XACK."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    requests = f"{prefix}:bare:req"
    await client.xgroup_create(requests, BARE_GROUP, id="0", mkstream=True)
    print("ready", flush=True)
    while True:
        batches = await client.xreadgroup(BARE_GROUP, "w", {requests: ">"}, count=256, block=1000)
        for _stream, entries in batches:
            pipe = client.pipeline(transaction=False)
            for entry_id, fields in entries:
                pipe.xadd(fields["reply"], {"id": fields["id"]})
                pipe.xack(requests, BARE_GROUP, entry_id)
            await pipe.execute()


class BareClient:
    """Requester side of the bare round trip: XADD, and one reader resolving futures from XREAD."""

    def __init__(self, redis_url: str, prefix: str) -> None:
        self.client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        self.requests = f"{prefix}:bare:req"
        self.replies = f"{prefix}:bare:reply"
        self.waiting: dict[str, asyncio.Future[None]] = {}
        self.reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        last = "0-0"
        while True:
            for _stream, entries in await self.client.xread({self.replies: last}, count=512, block=1000):
                for entry_id, fields in entries:
                    last = entry_id
                    future = self.waiting.pop(fields["id"], None)
                    if future is not None:
                        future.set_result(None)

    async def call(self) -> None:
        if self.reader is None:
            self.reader = asyncio.create_task(self.read())
        request_id = uuid.uuid4().hex
        future = asyncio.get_running_loop().create_future()
        self.waiting[request_id] = future
        await self.client.xadd(self.requests, {"id": request_id, "reply": self.replies})
        await future

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
        await self.client.aclose()


# -- measurement ---------------------------------------------------------------------------------


async def measure(call: Callable[[], Awaitable[None]], requests: int, seconds: float, inflight: int) -> dict:
    for _ in range(50):  # warm-up: connections, scripts, JIT-free but cache-warm paths
        await call()
    latencies: list[float] = []
    for _ in range(requests):
        started = time.perf_counter()
        await call()
        latencies.append(time.perf_counter() - started)
    done = 0
    deadline = time.perf_counter() + seconds

    async def pump() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await call()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(pump() for _ in range(inflight)))
    elapsed = time.perf_counter() - started
    return {
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "rps": done / elapsed,
    }


async def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    redis_url = settings.redis_url or embedded_servers(settings.data_dir)[1].ensure_running()
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    bare_process = await start_child("support.bench.bench_bus", "--bare-worker", redis_url, prefix)
    bare = BareClient(redis_url, prefix)
    try:
        bare_figures = await measure(bare.call, args.requests, args.seconds, args.inflight)
    finally:
        await bare.close()
        await stop_child(bare_process)

    worker = await start_child(
        "support.tests.bus.consumer_process", "--redis-url", redis_url, "--prefix", prefix, "--agent", "echo",
        "--concurrency", str(args.inflight),
    )  # fmt: skip
    try:
        async with EventBus(redis_url, prefix, agent_id="bench") as bus:

            async def echo() -> None:
                response = await bus.request_agent(
                    AgentRequestEvent(
                        source_agent="bench", target_agent="echo", request_type="echo", payload={}
                    )
                )
                if response.status is not ResponseStatus.SUCCESS:
                    raise RuntimeError(f"echo failed: {response.status} {response.error}")

            bus_figures = await measure(echo, args.requests, args.seconds, args.inflight)
    finally:
        await stop_child(worker)
        cleanup = aioredis.Redis.from_url(redis_url)
        keys = [k async for k in cleanup.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await cleanup.delete(*keys)
        await cleanup.aclose()

    print(f"redis: {redis_url}  sequential requests: {args.requests}  sustained: {args.seconds:g}s x "
          f"{args.inflight} in flight")  # fmt: skip
    print(f"{'':26}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}")
    for name, figures in (
        ("bus echo (2 processes)", bus_figures),
        ("bare XADD/XREADGROUP/XADD", bare_figures),
    ):
        print(f"{name:26}{figures['p50_ms']:9.3f}{figures['p99_ms']:9.3f}{figures['rps']:9.0f}")
    ratios = {key: bus_figures[key] / bare_figures[key] for key in ("p50_ms", "p99_ms", "rps")}
    print(f"{'ratio bus/bare':26}{ratios['p50_ms']:8.2f}x{ratios['p99_ms']:8.2f}x{ratios['rps']:8.2f}x")
    print(f"targets: p50 ratio <= 3x ({ratios['p50_ms']:.2f}x); bus p99 < 10 ms "
          f"({bus_figures['p99_ms']:.2f} ms); bus >= 2000 req/s ({bus_figures['rps']:.0f})")  # fmt: skip
    met = ratios["p50_ms"] <= 3 and bus_figures["p99_ms"] < 10 and bus_figures["rps"] >= 2000
    print("targets met" if met else "targets NOT met")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=1500, help="sequential round trips for p50/p99")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of the sustained phase")
    parser.add_argument("--inflight", type=int, default=64, help="concurrent requests in the sustained phase")
    parser.add_argument("--bare-worker", nargs=2, metavar=("REDIS_URL", "PREFIX"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare_worker:
        asyncio.run(bare_worker(*args.bare_worker))
        return 0
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
