"""A worker process: ``python -m agent_orchestrator.runs --workflows MODULE [--concurrency N]``.

Runs until SIGTERM/SIGINT, then finishes (or hands back) the runs it holds.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from agent_orchestrator.runs.runtime import RunsRuntime
from agent_orchestrator.runs.worker import WorkerOptions
from agent_orchestrator.runs.workflow_table import import_workflow_modules
from shared.backends import resolve_backends
from shared.config import load_settings
from shared.logging import configure_logging

log = logging.getLogger("agent_orchestrator.runs.worker")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m agent_orchestrator.runs", description=__doc__)
    parser.add_argument("--workflows", action="append", default=[], help="module that registers workflows")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--lease-seconds", type=float, default=30.0)
    parser.add_argument("--queue", action="append", dest="queues", default=None)
    parser.add_argument("--worker-id", default=None)
    args = parser.parse_args(argv)
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    if args.lease_seconds <= 0:
        parser.error("--lease-seconds must be positive")
    return args


async def serve(args: argparse.Namespace) -> None:
    settings = load_settings()
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    import_workflow_modules(args.workflows)
    database_url = settings.database_url or resolve_backends(settings).database_url
    runtime = await RunsRuntime.open(database_url, pool_max=args.concurrency + 2, name="devtools-worker")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    options = WorkerOptions(
        concurrency=args.concurrency, lease_seconds=args.lease_seconds, queues=args.queues
    )
    worker = runtime.worker(options, worker_id=args.worker_id)
    log.info("worker ready", extra={"worker": worker.worker_id, "workflows": runtime.workflows.names()})
    try:
        await worker.run(stop)
    finally:
        await runtime.close()


def main(argv: list[str] | None = None) -> None:
    asyncio.run(serve(parse_args(argv)))


if __name__ == "__main__":
    main()
