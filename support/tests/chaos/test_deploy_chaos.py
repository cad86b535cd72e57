"""A crash mid-deploy (issue 16, item 1): pr_deployment's deploy step is provably in progress (the
infrastructure agent has started the new release's app, which is held unhealthy by a gate file the
test controls) when the orchestrator, or separately the infrastructure agent, is SIGKILLed. The run
still succeeds, and the environment ends with exactly one release, live and judged healthy, no
orphan release folder and no app process other than the recorded one. A deploy that fails while its
orchestrator is dead is not tried again by the run's next attempt either."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_orchestrator.demo.sample_repo import create_sample_repo
from agent_orchestrator.runs.runtime import RunsRuntime
from services.infrastructure.env_state import EnvironmentDir
from services.infrastructure.recovery import stray_groups
from services.infrastructure.supervisor import is_alive
from shared.process import process_group_alive
from support.tests.agents.processes import free_port, wait_until
from support.tests.chaos.mid_deploy import (
    assert_one_live_release,
    deploy_in_progress,
    hold_health,
    start_deploy_run,
)
from support.tests.workflows.flagship_platform import Platform, running_platform

pytestmark = pytest.mark.chaos


@pytest.fixture(scope="module")
def platform(module_env: dict[str, str], log_dir: Path) -> Iterator[Platform]:
    agents = ["code-review", "cicd", "infrastructure"]
    # A killed agent's request is taken over by its restarted self after 2 s idle (not 30 s).
    with running_platform(
        module_env,
        log_dir,
        agents,
        DEVTOOLS_ORCHESTRATOR_LEASE_SECONDS="2",
        DEVTOOLS_AGENT_CLAIM_IDLE_MS="2000",
    ) as running:
        yield running


def crash(pgid: int) -> None:
    os.killpg(pgid, signal.SIGKILL)
    wait_until(lambda: not process_group_alive(pgid), what=f"process group {pgid} gone")


async def test_orchestrator_killed_while_the_agent_deploys(
    platform: Platform, runtime: RunsRuntime, tmp_path: Path
) -> None:
    environment, gate = "mid-deploy-orchestrator", tmp_path / "ready"
    repo = create_sample_repo(tmp_path / "repo", free_port())
    hold_health(platform, environment, gate)
    run_id = start_deploy_run(platform, repo, environment)

    starting = await deploy_in_progress(runtime, run_id, platform, environment)
    platform.orchestrator.kill()
    gate.touch()  # the deploy the killed orchestrator asked for goes on, and now comes up healthy

    survivor = platform.start_orchestrator("orchestrator-b")
    with platform.client(survivor) as client:
        done = client.follow(str(run_id))

    assert done["status"] == "succeeded", done["error"]
    assert done["attempts"] == 2  # claimed by the killed process, then by the survivor
    deploy = done["result"]["deploy"]
    assert deploy["release_id"] == starting.release_id
    assert deploy["replayed"] is True  # the survivor's deploy was answered with the first one's result
    assert assert_one_live_release(platform, environment, repo) == starting.release_id
    assert EnvironmentDir(platform.data_dir, environment).load().process == starting  # never restarted


async def test_orchestrator_killed_while_a_failing_deploy_runs_it_is_not_tried_again(
    platform: Platform, runtime: RunsRuntime, tmp_path: Path
) -> None:
    environment, gate = "mid-deploy-failing", tmp_path / "ready"
    repo = create_sample_repo(tmp_path / "repo", free_port())
    hold_health(platform, environment, gate)
    run_id = start_deploy_run(platform, repo, environment)

    starting = await deploy_in_progress(runtime, run_id, platform, environment)
    platform.orchestrator.kill()
    crash(starting.pid)  # the release fails: its app dies before it is healthy

    survivor = platform.start_orchestrator("orchestrator-c")
    with platform.client(survivor) as client:
        done = client.follow(str(run_id))

    assert done["status"] == "failed"
    assert "deploy failed" in done["error"]
    assert done["attempts"] == 2
    # The survivor's deploy (same run, same step) was answered with the first one's failure: the
    # commit was not released a second time.
    env = EnvironmentDir(platform.data_dir, environment)
    assert platform.releases(environment) == [starting.release_id]
    assert env.release_info(starting.release_id).outcome == "failed_health_check"
    state = env.load()
    assert state.current_release is None and state.process is None
    assert stray_groups(env, state) == set()
    assert [r["replayed"] for r in state.deploys.values()] == [False]  # recorded once, as it happened


async def test_infrastructure_agent_killed_mid_deploy_and_restarted(
    platform: Platform, runtime: RunsRuntime, tmp_path: Path
) -> None:
    environment, gate = "mid-deploy-agent", tmp_path / "ready"
    repo = create_sample_repo(tmp_path / "repo", free_port())
    hold_health(platform, environment, gate)
    run_id = start_deploy_run(platform, repo, environment)

    starting = await deploy_in_progress(runtime, run_id, platform, environment)
    platform.agents["infrastructure"].kill()
    assert is_alive(starting)  # the app runs in a session of its own: it outlived the agent
    gate.touch()
    platform.restart_agent("infrastructure")  # takes the dead replica's request over

    with platform.client() as client:
        done = client.follow(str(run_id))

    assert done["status"] == "succeeded", done["error"]
    assert done["attempts"] == 1  # the orchestrator waited for the redelivered request's answer
    # The retried deploy judged the dead attempt's release (same commit) instead of making another.
    assert done["result"]["deploy"]["release_id"] == starting.release_id
    assert assert_one_live_release(platform, environment, repo) == starting.release_id
