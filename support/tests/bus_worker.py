"""A bus consumer in its own process, for multi-process tests and the benchmark.

    python -m support.tests.bus_worker --redis-url URL --prefix P --agent A [--mode echo|hold-first]

Prints "ready" once it serves requests; runs until SIGTERM (or SIGKILL in chaos tests).
Modes (each answer may be delayed by --delay-ms of simulated work):
  echo        answer {"echo": payload, "worker": name}
  hold-first  the first worker to execute a request (SET NX on a marker) pushes its name to
              f"{prefix}:test:started" and then hangs; any later execution answers like echo.
              The test SIGKILLs the hanging worker to force a redelivery.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from shared.lib.agent_events import AgentRequestEvent
from shared.lib.bus_redis import BusOptions
from shared.lib.event_bus import EventBus


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--agent", required=True)
    parser.add_argument("--capability", action="append", default=[])
    parser.add_argument("--name", default=None)
    parser.add_argument("--mode", choices=["echo", "hold-first"], default="echo")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--claim-idle-ms", type=int, default=30_000)
    parser.add_argument("--delay-ms", type=int, default=0, help="simulated work per request")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    options = BusOptions(claim_idle_ms=args.claim_idle_ms)
    name = args.name or args.agent
    async with EventBus(args.redis_url, args.prefix, agent_id=args.agent, options=options) as bus:
        client = bus.client

        async def handler(request: AgentRequestEvent) -> dict[str, Any]:
            if args.mode == "hold-first":
                marker = f"{args.prefix}:test:executing:{request.request_id}"
                if await client.set(marker, name, nx=True, ex=300):
                    await client.rpush(f"{args.prefix}:test:started", name)
                    await asyncio.Event().wait()  # hang until killed
            if args.delay_ms:
                await asyncio.sleep(args.delay_ms / 1000)
            return {"echo": request.payload, "worker": name}

        await bus.serve_requests(
            args.agent, args.capability, handler, concurrency=args.concurrency, consumer_name=name
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        print("ready", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    asyncio.run(serve(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
