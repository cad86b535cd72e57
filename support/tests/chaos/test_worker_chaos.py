"""A worker process killed with SIGKILL mid-run: another worker process finishes the run
from its last checkpoint, and the side effect recorded with `effects.once` happened once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from agent_orchestrator.runs.models import RunStatus
from agent_orchestrator.runs.runtime import RunsRuntime
from support.tests.runs import toys as runs_toys
from support.tests.runs.helpers import wait_for_event, wait_for_status

pytestmark = pytest.mark.chaos

REPO = Path(__file__).resolve().parents[3]
LEASE_SECONDS = "1.5"


@pytest.fixture
async def runtime(database_url: str) -> AsyncIterator[RunsRuntime]:
    runs_toys.ensure_toy_tables(database_url)
    rt = await RunsRuntime.open(database_url, pool_max=4)
    try:
        yield rt
    finally:
        await rt.close()


@pytest.fixture
def start_worker(service_env: dict[str, str]) -> Iterator[object]:
    started: list[subprocess.Popen[bytes]] = []

    def start(name: str, block: str | None = None) -> subprocess.Popen[bytes]:
        env = dict(service_env)
        if block:
            env["TOY_BLOCK"] = block
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "agent_orchestrator.runs",
                "--workflows", "support.tests.runs.toys",
                "--concurrency", "1", "--lease-seconds", LEASE_SECONDS, "--worker-id", name,
            ],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def _calls(rt: RunsRuntime, run_id: object) -> dict[str, int]:
    async with rt.pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT node, count(*) AS n FROM toy_calls WHERE run_id = %s GROUP BY node", (run_id,)
            )
        ).fetchall()
    return {r["node"]: int(r["n"]) for r in rows}  # type: ignore[index]


async def _effects(rt: RunsRuntime, run_id: object) -> int:
    async with rt.pool.connection() as conn:
        row = await (
            await conn.execute("SELECT count(*) AS n FROM toy_effects WHERE run_id = %s", (run_id,))
        ).fetchone()
    return int(row["n"])  # type: ignore[index]


@pytest.mark.parametrize(
    ("kill_in", "expected_calls"),
    [
        # Killed between steps: deploy finished and was checkpointed; only verify runs again.
        ("verify", {"prepare": 1, "deploy": 1, "verify": 2}),
        # Killed inside deploy after its effect was recorded: the node re-runs, the effect does not.
        ("deploy", {"prepare": 1, "deploy": 2, "verify": 1}),
    ],
)
async def test_sigkilled_worker_run_is_finished_by_another_exactly_once(
    runtime: RunsRuntime, start_worker: object, kill_in: str, expected_calls: dict[str, int]
) -> None:
    first = start_worker("doomed", block=kill_in)  # type: ignore[operator]
    run = await runtime.queue.enqueue("toy_deploy", {"label": f"chaos-{kill_in}"})
    await wait_for_event(runtime, run.id, "toy_blocking")
    os.kill(first.pid, signal.SIGKILL)
    assert first.wait(15) == -signal.SIGKILL

    start_worker("rescuer")  # type: ignore[operator]
    done = await wait_for_status(runtime, run.id, [RunStatus.SUCCEEDED, RunStatus.FAILED])
    assert done.status == RunStatus.SUCCEEDED, done.error
    assert done.result["steps"] == ["prepare", "deploy", "verify"]
    assert done.result["final_result"] == {"verified": {"release": f"chaos-{kill_in}-1"}}
    assert (done.attempts, done.failures) == (2, 1)
    assert await _calls(runtime, run.id) == expected_calls
    assert await _effects(runtime, run.id) == 1
    claims = [e.data["worker"] for e in await runtime.queue.events_after(run.id, 0) if e.kind == "claimed"]
    assert claims == ["doomed", "rescuer"]
