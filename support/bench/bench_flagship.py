"""Flagship benchmark: parallel_docs runs per second through the real services, against the same
documentation work asked for directly over the bus.

    .venv/bin/python -m support.bench.bench_flagship [--runs 16] [--concurrency 1,4,8]

Part of `python -m support.bench.bench_workflows`, which prints these figures together with the
checkpoint overhead (so `make bench` does not run this module on its own as well).

Starts the registry, the documentation agent and the orchestrator service (one worker that
executes up to max(concurrency) runs at once) as processes on a scratch database, a scratch
Redis prefix and a scratch data folder, against a generated sample repository. For each
concurrency N:
  - workflow: `--runs` parallel_docs runs (three documents each: one `Send` branch per type to the
    documentation agent, merge, write) with at most N in flight; completed runs per second;
  - direct: the same number of sets of three GENERATE_DOCS bus requests (the same doc types, the
    three of a set in parallel) with at most N sets in flight; sets per second. It is what the
    agent can deliver without the workflow engine, so workflow/direct is the engine's share.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis

from agent_orchestrator.api.client import OrchestratorClient
from agent_orchestrator.demo.sample_repo import create_sample_repo
from agent_orchestrator.workflows.parallel_docs import DEFAULT_DOC_TYPES
from shared import migrations
from shared.bus import AgentRequestEvent, EventBus, ResponseStatus
from shared.config import load_settings
from shared.db import with_database
from shared.embedded import embedded_servers
from support.bench.processes import (
    PLATFORM_TOKEN,
    free_port,
    registry_record,
    running_registry,
    start_service,
    wait_until,
)

# Run by bench_workflows: `make bench` (support/bench/__main__.py) skips it on its own.
INCLUDED_IN = "bench_workflows"
DEADLINE_SECONDS = 240.0
REQUEST_TIMEOUT_SECONDS = 120.0


@dataclass
class DocsPlatform:
    client: OrchestratorClient
    repo: Path
    scratch: Path  # its data folder (data/) is the server's output root
    redis_url: str
    redis_prefix: str


def measure_runs(client: OrchestratorClient, repo: Path, out: Path, runs: int, concurrency: int) -> float:
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


async def _generate(bus: EventBus, repo: Path, doc_type: str) -> None:
    event = AgentRequestEvent(
        source_agent="bench",
        target_agent="documentation",
        request_type="GENERATE_DOCS",
        payload={"repo": str(repo), "doc_type": doc_type},
        timeout_seconds=REQUEST_TIMEOUT_SECONDS,
    )
    response = await bus.request_agent(event, timeout=REQUEST_TIMEOUT_SECONDS)
    if response.status != ResponseStatus.SUCCESS:
        raise RuntimeError(f"GENERATE_DOCS {doc_type}: {response.status.value}: {response.error}")


async def _measure_direct(platform: DocsPlatform, sets: int, concurrency: int) -> float:
    async with EventBus(platform.redis_url, platform.redis_prefix, agent_id="bench") as bus:
        remaining = iter(range(sets))

        async def lane() -> None:
            for _ in remaining:  # lanes share the iterator: `sets` sets in all
                await asyncio.gather(*(_generate(bus, platform.repo, t) for t in DEFAULT_DOC_TYPES))

        started = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*(lane() for _ in range(concurrency))), DEADLINE_SECONDS)
        return sets / (time.monotonic() - started)


def measure_direct(platform: DocsPlatform, sets: int, concurrency: int) -> float:
    """Sets of GENERATE_DOCS (one request per doc type, in parallel) per second, N sets in flight."""
    return asyncio.run(_measure_direct(platform, sets, concurrency))


@contextlib.contextmanager
def docs_platform(concurrency: int) -> Iterator[DocsPlatform]:
    """Registry, documentation agent and orchestrator on scratch state; everything removed after."""
    settings = load_settings()
    servers = embedded_servers(settings.data_dir)
    server_url = settings.database_url or servers[0].ensure_running()
    redis_url = settings.redis_url or servers[1].ensure_running()
    name = f"devtools_bench_flagship_{os.getpid()}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    database_url = with_database(server_url, name)
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
                            "DEVTOOLS_ORCHESTRATOR_CONCURRENCY": str(concurrency)}  # fmt: skip
                orch = start_service("orchestrator", "agent_orchestrator.service", orch_env, orch_port, logs)
                try:
                    wait_until(
                        lambda: registry_record(registry, "documentation"), what="documentation registered"
                    )
                    repo = create_sample_repo(root / "repo", free_port())
                    with OrchestratorClient(orch.url, PLATFORM_TOKEN, timeout=60) as client:
                        yield DocsPlatform(client, repo.path, root, redis_url, prefix)
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


def flagship_figures(runs: int, levels: list[int]) -> None:
    """Print workflow runs/s and direct sets/s per concurrency level, and their ratio."""
    with docs_platform(max(levels)) as platform:
        # Warm-up: imports, pools and first requests on both paths.
        measure_runs(platform.client, platform.repo, platform.scratch / "data" / "warm", 2, 1)
        measure_direct(platform, 2, 1)
        print(
            f"parallel_docs: {len(DEFAULT_DOC_TYPES)} documents per run, real documentation agent, "
            f"{runs} runs per level"
        )
        print("  concurrent   workflow runs/s   direct GENERATE_DOCS sets/s   workflow/direct")
        for level in levels:
            workflow = measure_runs(
                platform.client, platform.repo, platform.scratch / "data" / "out", runs, level
            )
            direct = measure_direct(platform, runs, level)
            print(f"  {level:10d} {workflow:17.2f} {direct:29.2f} {workflow / direct:16.2f}", flush=True)


def parse_levels(text: str, parser: argparse.ArgumentParser) -> list[int]:
    try:
        levels = [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        parser.error(f"--concurrency: expected numbers like 1,4,8 (got {text!r})")
    if not levels or min(levels) < 1:
        parser.error(f"--concurrency: each level must be at least 1 (got {text!r})")
    return levels


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
    flagship_figures(args.runs, parse_levels(args.concurrency, parser))
    print(f"(benchmark took {time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
