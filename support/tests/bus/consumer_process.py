"""A bus consumer in its own process, for multi-process tests and the benchmark.

    python -m support.tests.bus.consumer_process --redis-url URL --prefix P --agent A [--mode echo|hold-first]

Prints "ready" once it serves requests; runs until SIGTERM (or SIGKILL in chaos tests).
Modes (each answer may be delayed by --delay-ms of simulated work):
  echo        answer {"echo": payload, "worker": name}
  hold-first  the first worker to execute a request (SET NX on a marker) pushes its name to
              f"{prefix}:test:started" and then hangs; any later execution answers like echo.
              The test SIGKILLs the hanging worker to force a redelivery.
Flags for tests that observe the worker from outside:
  --record    every execution first pushes {"worker", "request_id", "priority", "payload"} (JSON)
              to f"{prefix}:test:executed" (the test BLPOPs or LRANGEs it)
  --gate      then waits for a token on f"{prefix}:test:release:{name}" before answering
  --non-idempotent  serve with idempotent=False (a duplicate is answered from the first result)

`Worker.start(...)` launches one from a test and waits for its "ready".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import Any

from shared.bus import AgentRequestEvent, BusOptions, EventBus

REPO_ROOT = Path(__file__).resolve().parents[2]


def executed_key(prefix: str) -> str:
    return f"{prefix}:test:executed"


def release_key(prefix: str, name: str) -> str:
    return f"{prefix}:test:release:{name}"


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
    parser.add_argument("--record", action="store_true", help="push each execution to a list")
    parser.add_argument("--gate", action="store_true", help="answer only when released by the test")
    parser.add_argument("--non-idempotent", action="store_true")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    options = BusOptions(claim_idle_ms=args.claim_idle_ms)
    name = args.name or args.agent
    async with EventBus(args.redis_url, args.prefix, agent_id=args.agent, options=options) as bus:
        client = bus.client

        async def handler(request: AgentRequestEvent) -> dict[str, Any]:
            if args.record:
                execution = {"worker": name, "request_id": request.request_id, "payload": request.payload}
                await client.rpush(
                    executed_key(args.prefix), json.dumps({**execution, "priority": request.priority})
                )
            if args.gate:
                await client.blpop([release_key(args.prefix, name)], timeout=60)
            if args.mode == "hold-first":
                marker = f"{args.prefix}:test:executing:{request.request_id}"
                if await client.set(marker, name, nx=True, ex=300):
                    await client.rpush(f"{args.prefix}:test:started", name)
                    await asyncio.Event().wait()  # hang until killed
            if args.delay_ms:
                await asyncio.sleep(args.delay_ms / 1000)
            return {"echo": request.payload, "worker": name}

        await bus.serve_requests(
            args.agent,
            args.capability,
            handler,
            concurrency=args.concurrency,
            consumer_name=name,
            idempotent=not args.non_idempotent,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        print("ready", flush=True)
        await stop.wait()


class Worker:
    """This module in a child process, started from a test."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, *args: str) -> Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "support.tests.bus.consumer_process", *args,
            cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        assert process.stdout is not None
        async with asyncio.timeout(30):
            line = await process.stdout.readline()
        assert line.strip() == b"ready", f"worker did not start: {line!r}"
        return cls(process)

    async def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        await self.process.wait()

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(10):
                    await self.process.wait()
            except TimeoutError:
                await self.kill()


def main(argv: list[str] | None = None) -> int:
    asyncio.run(serve(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
