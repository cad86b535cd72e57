"""pr_deployment runs held at a known point of their deploy step, for the chaos tests: the sample
app's health held back by a gate file (the infrastructure agent is mid-deploy until the test opens
it), and the checks that a deploy left exactly one live release and no orphan."""

from __future__ import annotations

import os
from pathlib import Path
from uuid import UUID

import httpx
import psutil

from agent_orchestrator.demo.sample_repo import SampleRepo
from agent_orchestrator.runs.runtime import RunsRuntime
from services.infrastructure.env_state import EnvironmentDir, RunningProcess
from services.infrastructure.recovery import stray_groups
from services.infrastructure.supervisor import is_alive
from support.tests.agents.processes import wait_until
from support.tests.chaos.orchestrator_kill import wait_for_run_event
from support.tests.workflows.flagship_platform import Platform


def hold_health(platform: Platform, environment: str, gate: Path) -> None:
    """Apps deployed to `environment` answer /health 503 until `gate` exists (the sample app's
    APP_READY_IF_EXISTS), so a deploy stays in its health wait until the test opens the gate."""
    platform.agent_request(
        "infrastructure",
        "UPDATE_CONFIG",
        {"environment": environment, "values": {"APP_READY_IF_EXISTS": str(gate)}, "restart": False},
    )


def start_deploy_run(platform: Platform, repo: SampleRepo, environment: str) -> UUID:
    with platform.client() as client:
        created = client.create_run(
            "pr_deployment", {"repo": str(repo.path), "head": repo.feature, "environment": environment}
        )
    return UUID(created["id"])


async def deploy_in_progress(
    runtime: RunsRuntime, run_id: UUID, platform: Platform, environment: str
) -> RunningProcess:
    """Once the run's deploy node started: the app of a release not yet judged, started and alive."""
    await wait_for_run_event(
        runtime, run_id, lambda e: e.kind == "node_started" and e.node == "deploy", "the deploy step"
    )
    env = EnvironmentDir(platform.data_dir, environment)

    def starting() -> RunningProcess | None:
        # The agent's state file is an external process's state: polled, there is no event for it.
        process = env.load().process
        if process is None or not is_alive(process):
            return None
        return process if env.release_info(process.release_id).outcome == "pending" else None

    return wait_until(starting, deadline_s=60, what="the new release's app started")  # type: ignore[no-any-return]


def assert_one_live_release(platform: Platform, environment: str, repo: SampleRepo) -> str:
    """Exactly one release, current, judged healthy, its app the recorded one and the only one."""
    env = EnvironmentDir(platform.data_dir, environment)
    state = env.load()
    releases = platform.releases(environment)
    assert len(releases) == 1, releases
    (release,) = releases
    assert state.current_release == release
    assert state.history == [release]
    assert env.release_info(release).outcome == "healthy"
    assert state.process is not None and is_alive(state.process)
    assert state.process.release_id == release
    assert stray_groups(env, state) == set()
    listeners = {
        c.pid for c in psutil.net_connections("tcp") if c.laddr and c.laddr.port == repo.port and c.pid
    }
    assert {os.getpgid(pid) for pid in listeners} == {state.process.pid}
    assert httpx.get(repo.url + "/", timeout=5).text == "Hello, world!"
    return release
