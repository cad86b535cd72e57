"""Workflow benchmark, in one run: checkpoint overhead per step, and runs/s through the run queue,
for toy graphs and for the real parallel_docs against direct agent calls.

    .venv/bin/python -m support.bench.bench_workflows [--steps 10] [--invocations 30] [--runs 60]
        [--docs-runs 16] [--docs-concurrency 1,4,8]

Uses DEVTOOLS_DATABASE_URL and DEVTOOLS_REDIS_URL (or the embedded servers) and works in scratch
databases and a scratch Redis prefix it creates and removes. Prints:
  1. per-step time of one toy sequential graph without a checkpointer and with the
     Postgres checkpointer (durability "sync", as run workers use, and "async"), and the ratio;
  2. runs completed per second through the queue (enqueue -> claim -> execute -> finish)
     for a toy parallel graph (3 branches + merge), with 1 and with N concurrent runs;
  3. parallel_docs runs per second with N concurrent runs through the real services (registry,
     documentation agent, orchestrator service), next to the same documents asked for directly
     over the bus (sets of three GENERATE_DOCS per second), and their ratio (see bench_flagship).
About a minute in all.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from typing import Any

import psycopg

from agent_orchestrator.runs.checkpointing import checkpointer, run_config
from agent_orchestrator.runs.models import RunStatus
from agent_orchestrator.runs.queue import EVENTS_CHANNEL
from agent_orchestrator.runs.runtime import RunsRuntime
from agent_orchestrator.runs.worker import WorkerOptions
from agent_orchestrator.runs.workflow_table import WorkflowTable
from agent_orchestrator.workflows.state import MultiAgentState
from agent_orchestrator.workflows.templates import parallel, sequential
from shared import migrations
from shared.config import load_settings
from shared.db import with_database
from shared.embedded import embedded_servers
from support.bench.bench_flagship import flagship_figures, parse_levels

DEADLINE_SECONDS = 50.0


def step(name: str) -> Any:
    async def node(state: MultiAgentState) -> dict[str, Any]:
        return {"subtask_status": {name: "done"}}

    return node


def branch(name: str) -> Any:
    async def node(state: MultiAgentState) -> dict[str, Any]:
        return {"partial_results": {name: len(name)}, "agent_status": {name: "done"}}

    return node


async def merge(state: MultiAgentState) -> dict[str, Any]:
    return {"final_result": sum(state["partial_results"].values())}


def parallel_graph() -> Any:
    return parallel(MultiAgentState, {n: branch(n) for n in ("api", "guide", "deploy")}, ("merge", merge))


async def checkpoint_overhead(database_url: str, steps: int, invocations: int) -> None:
    graph = sequential(MultiAgentState, [(f"s{i}", step(f"s{i}")) for i in range(steps)])
    plain = graph.compile()
    started = time.perf_counter()
    for _ in range(invocations):
        await plain.ainvoke({"task_id": "b"})
    base_ms = (time.perf_counter() - started) * 1000 / (invocations * steps)
    print(f"checkpoint overhead: {steps}-step sequential graph, {invocations} invocations each")
    print(f"  no checkpointer           {base_ms:8.3f} ms/step")
    async with checkpointer(database_url, max_size=2) as saver:
        durable = graph.compile(checkpointer=saver)
        for durability in ("sync", "async"):
            started = time.perf_counter()
            for _ in range(invocations):
                await durable.ainvoke({"task_id": "b"}, run_config(str(uuid.uuid4())), durability=durability)  # type: ignore[arg-type]
            ms = (time.perf_counter() - started) * 1000 / (invocations * steps)
            print(
                f"  postgres, durability={durability:<5} {ms:8.3f} ms/step  "
                f"(+{ms - base_ms:.3f} ms/step, x{ms / base_ms:.1f})"
            )


async def queue_throughput(database_url: str, runs: int, concurrency: int) -> float:
    workflows = WorkflowTable()
    from pydantic import BaseModel

    class BenchInput(BaseModel):
        n: int = 0

    workflows.register("bench_parallel", parallel_graph, BenchInput)
    runtime = await RunsRuntime.open(
        database_url, workflows=workflows, pool_max=concurrency + 4, name="bench"
    )
    try:
        ids = [(await runtime.queue.enqueue("bench_parallel", {"n": i})).id for i in range(runs)]
        sub = runtime.listener.subscribe(EVENTS_CHANNEL)
        stop = asyncio.Event()
        worker = runtime.worker(WorkerOptions(concurrency=concurrency, lease_seconds=30))
        started = time.perf_counter()
        task = asyncio.create_task(worker.run(stop))
        end = time.monotonic() + DEADLINE_SECONDS / 2
        while True:
            async with runtime.pool.connection() as conn:
                row = await (
                    await conn.execute(
                        "SELECT count(*) AS n FROM runs WHERE id = ANY(%s) AND status = %s",
                        (ids, RunStatus.SUCCEEDED.value),
                    )
                ).fetchone()
            if row["n"] == runs:  # type: ignore[index]
                break
            if time.monotonic() > end:
                raise RuntimeError(f"only {row['n']} of {runs} runs finished in time")  # type: ignore[index]
            await sub.wait(1.0)
        elapsed = time.perf_counter() - started
        stop.set()
        await task
        sub.close()
        return runs / elapsed
    finally:
        await runtime.close()


async def amain(args: argparse.Namespace) -> None:
    settings = load_settings()
    server_url = settings.database_url or embedded_servers(settings.data_dir)[0].ensure_running()
    name = f"devtools_bench_{os.getpid()}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    database_url = with_database(server_url, name)
    try:
        migrations.upgrade(database_url)
        await checkpoint_overhead(database_url, args.steps, args.invocations)
        print(
            f"queue throughput: toy parallel graph (3 branches + merge), {args.runs} runs, one worker process"
        )
        for concurrency in (1, args.concurrency):
            rate = await queue_throughput(database_url, args.runs, concurrency)
            print(f"  {concurrency:2d} concurrent runs  {rate:8.1f} runs/s")
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--invocations", type=int, default=30)
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--docs-runs", type=int, default=16, help="parallel_docs runs per level")
    parser.add_argument("--docs-concurrency", default="1,4,8", help="parallel_docs concurrency levels")
    args = parser.parse_args(argv if argv is not None else [])
    if args.docs_runs < 1:
        parser.error("--docs-runs must be at least 1")
    levels = parse_levels(args.docs_concurrency, parser)
    started = time.monotonic()
    asyncio.run(asyncio.wait_for(amain(args), DEADLINE_SECONDS + 5))
    flagship_figures(args.docs_runs, levels)
    print(f"(benchmark took {time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
