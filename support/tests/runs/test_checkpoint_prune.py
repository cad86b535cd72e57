"""Retention: `prune_checkpoints` and `devtools db prune` keep what they promise."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from langgraph.types import Command, interrupt
from psycopg_pool import AsyncConnectionPool

from agent_orchestrator.runs.checkpointing import checkpointer, run_config
from agent_orchestrator.runs.effects import once, recorded
from agent_orchestrator.runs.prune import PruneArgumentError, parse_duration, prune_checkpoints
from agent_orchestrator.runs.queue import RunQueue
from agent_orchestrator.workflows.templates import sequential
from shared.db import open_pool
from support.tests.runs.toys import ToyState

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
STEPS = [f"s{i}" for i in range(5)]


def step(name: str) -> Any:
    async def node(state: ToyState) -> dict[str, Any]:
        # A growing list: each step writes a new blob version of `steps`.
        return {"steps": [name], "partial_results": {name: "x" * 100}}

    return node


async def ask(state: ToyState) -> dict[str, Any]:
    return {"decision": interrupt("go on?")}


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    p = await open_pool(database_url, max_size=4)
    try:
        yield p
    finally:
        await p.close()


async def _scalar(pool: AsyncConnectionPool, sql: str, *params: object) -> int:
    async with pool.connection() as conn:
        row = await (await conn.execute(sql, params)).fetchone()
    return int(row["n"])  # type: ignore[index]


async def _checkpoints(pool: AsyncConnectionPool, thread: object) -> int:
    return await _scalar(pool, "SELECT count(*) AS n FROM checkpoints WHERE thread_id = %s", str(thread))


ORPHAN_BLOBS = """
SELECT count(*) AS n FROM checkpoint_blobs b WHERE b.thread_id = %s AND NOT EXISTS (
    SELECT 1 FROM checkpoints c WHERE c.thread_id = b.thread_id AND c.checkpoint_ns = b.checkpoint_ns
      AND c.checkpoint -> 'channel_versions' ->> b.channel = b.version)
"""
ORPHAN_WRITES = """
SELECT count(*) AS n FROM checkpoint_writes w WHERE w.thread_id = %s AND NOT EXISTS (
    SELECT 1 FROM checkpoints c WHERE c.thread_id = w.thread_id AND c.checkpoint_id = w.checkpoint_id)
"""


async def test_prune_deletes_expired_threads_and_keeps_the_last_k(
    database_url: str, pool: AsyncConnectionPool
) -> None:
    queue = RunQueue(pool)
    runs = {
        name: await queue.enqueue("toy_prune", {"label": name})
        for name in ("old", "recent", "waiting", "busy")
    }
    plain = sequential(ToyState, [(s, step(s)) for s in STEPS])
    with_ask = sequential(
        ToyState, [("s0", step("s0")), ("s1", step("s1")), ("ask", ask), ("s2", step("s2"))]
    )
    async with checkpointer(database_url, max_size=2) as saver:
        for name in ("old", "recent", "busy"):
            await plain.compile(checkpointer=saver).ainvoke(
                {"label": name}, run_config(str(runs[name].id)), durability="sync"
            )
        await with_ask.compile(checkpointer=saver).ainvoke(
            {"label": "waiting"}, run_config(str(runs["waiting"].id)), durability="sync"
        )
        async with pool.connection() as conn:
            for name, status, age in (("old", "succeeded", "10 days"), ("recent", "succeeded", "1 hour")):
                await conn.execute(
                    "UPDATE runs SET status = %s, finished_at = now() - %s::interval WHERE id = %s",
                    (status, age, runs[name].id),
                )
            await conn.execute("UPDATE runs SET status = 'interrupted' WHERE id = %s", (runs["waiting"].id,))
            await conn.execute(
                "UPDATE runs SET status = 'running', lease_expires_at = now() + interval '1 hour' "
                "WHERE id = %s",
                (runs["busy"].id,),
            )
        graph = plain.compile(checkpointer=saver)
        before = (await graph.aget_state(run_config(str(runs["recent"].id)))).values
        busy_before = await _checkpoints(pool, runs["busy"].id)
        blobs_before = await _scalar(
            pool, "SELECT count(*) AS n FROM checkpoint_blobs WHERE thread_id = %s", str(runs["recent"].id)
        )
        assert await _checkpoints(pool, runs["recent"].id) == len(STEPS) + 2

        report = await prune_checkpoints(pool, older_than=timedelta(days=7), keep_last=2)

        assert report.threads_deleted == 1 and report.threads_trimmed == 2
        assert await _checkpoints(pool, runs["old"].id) == 0
        for table in ("checkpoint_blobs", "checkpoint_writes"):
            assert (
                await _scalar(
                    pool, f"SELECT count(*) AS n FROM {table} WHERE thread_id = %s", str(runs["old"].id)
                )
                == 0
            )
        assert await _checkpoints(pool, runs["recent"].id) == 2
        assert await _checkpoints(pool, runs["waiting"].id) == 2
        assert await _checkpoints(pool, runs["busy"].id) == busy_before  # a running run is left alone
        for name in ("recent", "waiting"):
            thread = str(runs[name].id)
            assert await _scalar(pool, ORPHAN_BLOBS, thread) == 0
            assert await _scalar(pool, ORPHAN_WRITES, thread) == 0
        assert (
            await _scalar(
                pool,
                "SELECT count(*) AS n FROM checkpoint_blobs WHERE thread_id = %s",
                str(runs["recent"].id),
            )
            < blobs_before
        )

        # Pruned threads still load with their latest state, and history starts at the kept ones.
        after = await graph.aget_state(run_config(str(runs["recent"].id)))
        assert after.values == before
        history = [s async for s in graph.aget_state_history(run_config(str(runs["recent"].id)))]
        assert len(history) == 2 and history[-1].parent_config is None
        # The interrupted thread still resumes from its kept checkpoint.
        asking = with_ask.compile(checkpointer=saver)
        out = await asking.ainvoke(
            Command(resume="yes"), run_config(str(runs["waiting"].id)), durability="sync"
        )
        assert out["decision"] == "yes" and out["steps"] == ["s0", "s1", "s2"]

    again = await prune_checkpoints(pool, older_than=timedelta(days=7), keep_last=2)
    # Only the resumed thread grew (ask finished, s2 ran): two more checkpoints, trimmed back to two.
    assert (again.threads_deleted, again.threads_trimmed, again.checkpoints_deleted) == (0, 1, 2)


FINISHED_AGO = {"ancient": "100 days", "old": "10 days", "recent": "1 hour", "parent": "100 days"}


async def test_prune_deletes_old_run_events_and_with_a_run_retention_old_runs(
    database_url: str, pool: AsyncConnectionPool
) -> None:
    queue = RunQueue(pool)
    runs = {
        name: await queue.enqueue("toy_prune", {"label": name})
        for name in ("ancient", "old", "recent", "parent", "fork", "waiting")
    }
    plain = sequential(ToyState, [(s, step(s)) for s in STEPS])
    async with checkpointer(database_url, max_size=2) as saver:
        for name in ("ancient", "old"):
            await plain.compile(checkpointer=saver).ainvoke(
                {"label": name}, run_config(str(runs[name].id)), durability="sync"
            )
    async with pool.connection() as conn:
        for name, age in FINISHED_AGO.items():
            await conn.execute(
                "UPDATE runs SET status = 'succeeded', finished_at = now() - %s::interval WHERE id = %s",
                (age, runs[name].id),
            )
        await conn.execute(
            "UPDATE runs SET status = 'interrupted', parent_run_id = %s WHERE id = %s",
            (runs["parent"].id, runs["fork"].id),
        )
        await conn.execute("UPDATE runs SET status = 'interrupted' WHERE id = %s", (runs["waiting"].id,))
    for run in runs.values():
        await queue.add_event(run.id, "node_finished", "s0", {})
        await once(pool, run.id, "deploy:staging", _released)

    async def events(name: str) -> int:
        return await _scalar(pool, "SELECT count(*) AS n FROM run_events WHERE run_id = %s", runs[name].id)

    async def effects(name: str) -> int:
        return await _scalar(
            pool, "SELECT count(*) AS n FROM run_step_effects WHERE run_id = %s", runs[name].id
        )

    # A run retention (30 days) shorter than the checkpoint one (200 days): the ancient run goes
    # with everything it owns, its thread included.
    report = await prune_checkpoints(
        pool, older_than=timedelta(days=200), keep_last=None, runs_older_than=timedelta(days=30)
    )

    assert await queue.get(runs["ancient"].id) is None
    assert report.runs_deleted >= 1 and report.checkpoints_deleted >= len(STEPS)
    assert await _checkpoints(pool, runs["ancient"].id) == 0
    assert await events("ancient") == 0 and await effects("ancient") == 0
    # Younger than the run retention, unfinished, or still forked from: kept with all they own.
    for name in ("old", "recent", "parent", "fork", "waiting"):
        assert await queue.get(runs[name].id) is not None
        assert await events(name) == 2  # queued, node_finished
    for name in ("old", "recent", "parent", "waiting"):
        assert await effects(name) == 1
    # The fork found its parent's record instead of deploying: why a forked-from run is kept.
    assert await effects("fork") == 0
    assert await recorded(pool, runs["fork"].id, "deploy:staging") == {"value": {"release": "r1"}}
    assert await _checkpoints(pool, runs["old"].id) == len(STEPS) + 2

    # The checkpoint retention (7 days) also takes the events of runs finished before it; rows stay.
    report = await prune_checkpoints(pool, older_than=timedelta(days=7), keep_last=None)

    assert report.events_deleted >= 4 and report.runs_deleted == 0
    for name in ("old", "parent"):
        assert await events(name) == 0 and await queue.get(runs[name].id) is not None
    for name in ("recent", "fork", "waiting"):
        assert await events(name) == 2
    assert await _checkpoints(pool, runs["old"].id) == 0


async def _released() -> dict[str, str]:
    return {"release": "r1"}


def test_retention_arguments_are_checked() -> None:
    assert parse_duration("7d") == timedelta(days=7)
    assert parse_duration("12h") == timedelta(hours=12)
    assert parse_duration("30") == timedelta(days=30)
    with pytest.raises(PruneArgumentError, match="--older-than"):
        parse_duration("soon")
    with pytest.raises(PruneArgumentError, match="negative"):
        parse_duration("-1d")


async def test_keep_last_must_be_positive(pool: AsyncConnectionPool) -> None:
    with pytest.raises(PruneArgumentError, match="--keep-last"):
        await prune_checkpoints(pool, older_than=timedelta(days=1), keep_last=0)


def test_cli_prune(database_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVTOOLS_")}
    env["DEVTOOLS_DATABASE_URL"] = database_url
    cmd = [sys.executable, "-m", "agent_orchestrator", "db", "prune"]
    ok = subprocess.run(
        [*cmd, "--older-than", "7d", "--keep-last", "3"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert "expired threads" in ok.stdout and "run events" in ok.stdout
    with_runs = subprocess.run(
        [*cmd, "--runs-older-than", "365d"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert with_runs.returncode == 0, with_runs.stderr
    assert "deleted 0 runs" in with_runs.stdout
    bad = subprocess.run(
        [*cmd, "--keep-last", "0"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "--keep-last" in bad.stderr
    bad = subprocess.run(
        [*cmd, "--runs-older-than", "soon"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "--runs-older-than" in bad.stderr
