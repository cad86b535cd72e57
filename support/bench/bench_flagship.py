"""Flagship benchmark: parallel_docs runs per second through the real services.

    .venv/bin/python -m support.bench.bench_flagship [--runs 16] [--concurrency 1,4,8]

Starts the registry, the documentation agent and the orchestrator service (one worker that
executes up to max(concurrency) runs at once) as processes on a scratch database, a scratch
Redis prefix and a scratch data folder, against a generated sample repository. For each
concurrency N it enqueues `--runs` parallel_docs runs (three documents each: one `Send`
branch per type to the documentation agent, merge, write) keeping at most N in flight, and
prints completed runs per second (enqueue to last finish). Bounded: about a minute.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections import deque
from pathlib import Path

import psycopg
import redis

from agent_orchestrator.runs_client import OrchestratorClient
from agent_orchestrator.sample_repo import create_sample_repo
from shared import migrations
from shared.config import load_settings
from shared.db import with_database
from shared.embedded import embedded_servers
from support.tests.agents.processes import (
    PLATFORM_TOKEN,
    free_port,
    registry_record,
    running_registry,
    start_service,
    wait_until,
)

DEADLINE_SECONDS = 240.0


def measure(client: OrchestratorClient, repo: Path, out: Path, runs: int, concurrency: int) -> float:
    """Runs/s with at most `concurrency` runs in flight (submitted as earlier ones finish)."""
    started = time.monotonic()
    in_flight: deque[str] = deque()
    submitted = finished = 0
    while finished < runs:
        while submitted < runs and len(in_flight) < concurrency:
            data = {"repo": str(repo), "output_dir": str(out / f"n{concurrency}-{submitted}")}
            in_flight.append(client.create_run("parallel_docs", data)["id"])
            submitted += 1
        run = client.follow(in_flight.popleft())
        if run["status"] != "succeeded":
            raise RuntimeError(f"run {run['id']} {run['status']}: {run['error']}")
        finished += 1
        if time.monotonic() - started > DEADLINE_SECONDS:
            raise TimeoutError("benchmark past its deadline")
    return runs / (time.monotonic() - started)


def run(args: argparse.Namespace) -> None:
    settings = load_settings()
    servers = embedded_servers(settings.data_dir)
    server_url = settings.database_url or servers[0].ensure_running()
    redis_url = settings.redis_url or servers[1].ensure_running()
    name = f"devtools_bench_flagship_{os.getpid()}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    database_url = with_database(server_url, name)
    levels = [int(c) for c in args.concurrency.split(",")]
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    try:
        migrations.upgrade(database_url)
        with tempfile.TemporaryDirectory(prefix="bench-flagship-") as scratch:
            root = Path(scratch)
            env = {k: v for k, v in os.environ.items() if not k.startswith("DEVTOOLS_")}
            env.update(
                DEVTOOLS_DATABASE_URL=database_url,
                DEVTOOLS_REDIS_URL=redis_url,
                DEVTOOLS_REDIS_PREFIX=prefix,
                DEVTOOLS_DATA_DIR=str(root / "data"),
                DEVTOOLS_LOG_LEVEL="WARNING",
                DEVTOOLS_LLM="none",
                DEVTOOLS_API_TOKEN=PLATFORM_TOKEN,
            )
            logs = root / "logs"
            logs.mkdir()
            with running_registry(env, logs) as registry:
                env["DEVTOOLS_REGISTRY_URL"] = registry.url
                docs_port, orch_port = free_port(), free_port()
                docs_env = {**env, "DEVTOOLS_DOCUMENTATION_PORT": str(docs_port)}
                docs = start_service("documentation", "services.documentation", docs_env, docs_port, logs)
                orch_env = {**env, "DEVTOOLS_ORCHESTRATOR_PORT": str(orch_port),
                            "DEVTOOLS_ORCHESTRATOR_CONCURRENCY": str(max(levels))}  # fmt: skip
                orch = start_service("orchestrator", "agent_orchestrator.service", orch_env, orch_port, logs)
                try:
                    wait_until(
                        lambda: registry_record(registry, "documentation"), what="documentation registered"
                    )
                    repo = create_sample_repo(root / "repo", free_port())
                    with OrchestratorClient(orch.url, PLATFORM_TOKEN, timeout=60) as client:
                        measure(client, repo.path, root / "warm", 2, 1)  # imports, pools, first requests
                        print(
                            f"parallel_docs (3 documents per run, real documentation agent), {args.runs} runs"
                        )
                        for level in levels:
                            rate = measure(client, repo.path, root / "out", args.runs, level)
                            print(f"  {level:2d} concurrent runs  {rate:6.2f} runs/s", flush=True)
                finally:
                    orch.terminate()
                    docs.terminate()
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument("--concurrency", default="1,4,8")
    args = parser.parse_args(argv if argv is not None else [])
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    started = time.monotonic()
    run(args)
    print(f"(benchmark took {time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
