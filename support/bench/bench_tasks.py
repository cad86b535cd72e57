"""Task benchmark: no-op tasks end to end (created, dispatched over the bus to an agent, its result
recorded) with 1 and with 4 agent replicas, next to the bare bus echo rate to the same agent measured
in the same run, and the dispatch latency (ready until an agent has it).

    .venv/bin/python -m support.bench.bench_tasks [--tasks 2000] [--latency-tasks 200]

Uses DEVTOOLS_DATABASE_URL and DEVTOOLS_REDIS_URL (or the embedded servers), in a scratch database
and Redis prefix of its own. Starts a registry and the no-op agent (support/bench/noop_agent.py,
capacity 32 per replica) as processes and a dispatcher in this process. Prints:
  1. the bare bus rate: NOOP requests/s sent straight to the agent over the bus, 64 in flight;
  2. tasks/s: N independent no-op tasks created at once until the last result is recorded,
     with 1 and with 4 replicas, and each rate's ratio to the bus rate;
  3. dispatch latency p50/p99 of single tasks created one after another (the time from the task
     becoming ready to the agent marking it running, both on the database's clock).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from agent_orchestrator.tasks import TaskSpec, TaskStore
from agent_orchestrator.tasks.dispatcher import Dispatcher, DispatcherOptions
from shared import migrations
from shared.agents import RegistryClient
from shared.bus import AgentRequestEvent, EventBus
from shared.config import load_settings
from shared.db import open_pool, with_database
from shared.embedded import embedded_servers
from support.bench.processes import (
    PLATFORM_TOKEN,
    ServiceProcess,
    free_port,
    registry_record,
    running_registry,
    start_service,
    wait_until,
)

DONE_SQL = """
SELECT count(*) FILTER (WHERE status = 'succeeded')::int AS ok, count(*)::int AS n
FROM tasks WHERE ticket_id = %s
"""
LATENCY_SQL = """
SELECT extract(epoch FROM started_at - ready_at) * 1000 AS ms FROM tasks
WHERE ticket_id = %s AND started_at IS NOT NULL ORDER BY ms
"""


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def start_replicas(
    env: dict[str, str], registry: ServiceProcess, logs: Path, names: range
) -> list[ServiceProcess]:
    started = []
    for i in names:
        port = free_port()
        replica_env = {
            **env,
            "DEVTOOLS_API_TOKEN": PLATFORM_TOKEN,
            "DEVTOOLS_REGISTRY_URL": registry.url,
            "DEVTOOLS_AGENT_PORT": str(port),
            "DEVTOOLS_AGENT_REPLICA": f"r{i}",
            "DEVTOOLS_AGENT_HEARTBEAT_INTERVAL_SECONDS": "0.5",
        }
        started.append(start_service(f"noop-r{i}", "support.bench.noop_agent", replica_env, port, logs))
    for i in names:
        wait_until(lambda i=i: registry_record(registry, f"noop.r{i}"), what=f"noop.r{i} registered")
    return started


async def new_ticket(pool: Any) -> uuid.UUID:
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                "INSERT INTO tickets (title, repo_path, created_by, phase)"
                " VALUES ('bench', '/bench', 'bench', 'X') RETURNING id"
            )
        ).fetchone()
    return row["id"]


def noop_specs(count: int) -> list[TaskSpec]:
    return [
        TaskSpec(key=f"t{i}", capability="noop", request_type="NOOP", payload={"i": i}) for i in range(count)
    ]


async def bus_rate(redis_url: str, prefix: str, requests: int, inflight: int = 64) -> float:
    async with EventBus(redis_url, prefix, agent_id="bench") as bus:

        async def one(i: int) -> None:
            event = AgentRequestEvent(
                source_agent="bench", target_agent="noop", request_type="NOOP", payload={"i": i}
            )
            await bus.request_agent(event, timeout=30)

        await asyncio.gather(*(one(i) for i in range(50)))  # warm-up
        semaphore = asyncio.Semaphore(inflight)

        async def bounded(i: int) -> None:
            async with semaphore:
                await one(i)

        started = time.perf_counter()
        await asyncio.gather(*(bounded(i) for i in range(requests)))
        return requests / (time.perf_counter() - started)


async def task_rate(pool: Any, store: TaskStore, count: int) -> float:
    ticket = await new_ticket(pool)
    started = time.perf_counter()
    specs = noop_specs(count)
    for first in range(0, count, 500):  # a batch holds at most 500 specs
        await store.create_tasks(ticket, "bench", specs[first : first + 500])
    deadline = time.monotonic() + 120
    while True:
        async with pool.connection() as conn:
            row = await (await conn.execute(DONE_SQL, (ticket,))).fetchone()
        if row["ok"] == count:
            return count / (time.perf_counter() - started)
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {row['ok']} of {count} tasks succeeded in time")
        await asyncio.sleep(0.01)  # polling the database is the measurement's clock tick


async def dispatch_latency(pool: Any, store: TaskStore, count: int) -> tuple[float, float]:
    ticket = await new_ticket(pool)
    for i in range(count):
        [task] = await store.create_tasks(
            ticket, "latency", [TaskSpec(key=f"l{i}", capability="noop", request_type="NOOP")]
        )
        # Polling the database is the measurement's clock tick (the figure is read from its timestamps).
        while (await store.get(task.id)).status.value != "succeeded":  # type: ignore[union-attr]  # noqa: ASYNC110
            await asyncio.sleep(0.002)
    async with pool.connection() as conn:
        ordered = [float(r["ms"]) for r in await (await conn.execute(LATENCY_SQL, (ticket,))).fetchall()]
    return percentile(ordered, 0.5), percentile(ordered, 0.99)


async def amain(args: argparse.Namespace) -> None:
    settings = load_settings()
    servers = embedded_servers(settings.data_dir)
    server_url = settings.database_url or servers[0].ensure_running()
    redis_url = settings.redis_url or servers[1].ensure_running()
    name = f"devtools_bench_tasks_{os.getpid()}"
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    database_url = with_database(server_url, name)
    logs = Path(tempfile.mkdtemp(prefix="devtools-bench-tasks-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVTOOLS_")}
    env.update(
        DEVTOOLS_DATABASE_URL=database_url,
        DEVTOOLS_REDIS_URL=redis_url,
        DEVTOOLS_REDIS_PREFIX=prefix,
        DEVTOOLS_DATA_DIR=str(logs / "data"),
        DEVTOOLS_LOG_LEVEL="WARNING",
        LITELLM_LOCAL_MODEL_COST_MAP="True",
    )
    replicas: list[ServiceProcess] = []
    try:
        migrations.upgrade(database_url)
        with running_registry(env, logs) as registry:
            replicas = start_replicas(env, registry, logs, range(1))
            pool = await open_pool(database_url, min_size=2, max_size=8, name="bench-tasks")
            bus = EventBus(redis_url, prefix, agent_id="dispatcher")
            await bus.start()
            client = RegistryClient(registry.url)
            store = TaskStore(pool)
            dispatcher = Dispatcher(store, bus, client, database_url, DispatcherOptions(batch_size=200))
            stop = asyncio.Event()
            running = asyncio.create_task(dispatcher.run(stop))
            try:
                bare = await bus_rate(redis_url, prefix, args.tasks)
                print(f"bus echo to the agent (64 in flight): {bare:8.1f} requests/s (baseline)")
                one = await task_rate(pool, store, args.tasks)
                print(f"tasks end to end, 1 replica:  {one:8.1f} tasks/s  x{one / bare:.2f} of the bus rate")
                replicas += start_replicas(env, registry, logs, range(1, 4))  # r0 runs already
                await asyncio.sleep(1.0)  # the dispatcher's registry view is cached for 0.5 s
                four = await task_rate(pool, store, args.tasks)
                print(
                    f"tasks end to end, 4 replicas: {four:8.1f} tasks/s  x{four / bare:.2f} of the bus rate"
                )
                p50, p99 = await dispatch_latency(pool, store, args.latency_tasks)
                print(
                    f"dispatch latency (ready -> running), {args.latency_tasks} single tasks: "
                    f"p50 {p50:.1f} ms, p99 {p99:.1f} ms"
                )
            finally:
                stop.set()
                await running
                await client.close()
                await bus.close()
                await pool.close()
                for replica in replicas:
                    replica.terminate()
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--latency-tasks", type=int, default=200)
    args = parser.parse_args(argv if argv is not None else [])
    started = time.monotonic()
    asyncio.run(amain(args))
    print(f"(benchmark took {time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
