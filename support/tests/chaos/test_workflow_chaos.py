"""The flagship pr_deployment under crashes: the orchestrator service running it is killed with
SIGKILL right after the deploy step; another orchestrator process finishes the run from the
checkpoint and the app was deployed exactly once. A replay fork of the finished run does not
deploy again either."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import httpx
import pytest

from agent_orchestrator.demo.sample_repo import create_sample_repo
from agent_orchestrator.runs.runtime import RunsRuntime
from support.tests.agents.processes import free_port
from support.tests.chaos.orchestrator_kill import kill_orchestrator_when
from support.tests.workflows.flagship_platform import Platform, running_platform

pytestmark = pytest.mark.chaos
ENV = "chaos"


@pytest.fixture(scope="module")
def platform(module_env: dict[str, str], log_dir: Path) -> Iterator[Platform]:
    agents = ["code-review", "cicd", "infrastructure"]
    with running_platform(module_env, log_dir, agents, DEVTOOLS_ORCHESTRATOR_LEASE_SECONDS="2") as running:
        yield running


async def _effects(runtime: RunsRuntime, run_id: UUID) -> list[str]:
    async with runtime.pool.connection() as conn:
        cur = await conn.execute("SELECT step_key FROM run_step_effects WHERE run_id = %s", (run_id,))
        return sorted(r["step_key"] for r in await cur.fetchall())  # type: ignore[index]


async def test_orchestrator_killed_after_deploy_another_finishes_and_deploys_once(
    platform: Platform, runtime: RunsRuntime, tmp_path: Path
) -> None:
    repo = create_sample_repo(tmp_path / "repo", free_port())
    with platform.client() as client:
        created = client.create_run(
            "pr_deployment", {"repo": str(repo.path), "head": repo.feature, "environment": ENV}
        )
    run_id = UUID(created["id"])

    await kill_orchestrator_when(
        runtime, run_id, platform, lambda e: e.kind == "node_finished" and e.node == "deploy", "deploy"
    )
    survivor = platform.start_orchestrator("orchestrator-b")
    with platform.client(survivor) as client:
        done = client.follow(str(run_id))

        assert done["status"] == "succeeded", done["error"]
        assert done["attempts"] == 2  # claimed by the killed process, then by the survivor
        assert len(platform.releases(ENV)) == 1
        assert await _effects(runtime, run_id) == [f"deploy:{ENV}"]
        async with httpx.AsyncClient(timeout=5) as http:
            assert (await http.get(repo.url + "/")).text == "Hello, world!"

        # Replay the finished run from the checkpoint before deploy: a fork that does not deploy again.
        history = client.history(str(run_id))
        before_deploy = next(h for h in history if h["next"] == ["deploy"])
        fork = client.replay(str(run_id), before_deploy["checkpoint_id"])
        forked = client.follow(fork["id"])

    assert forked["status"] == "succeeded", forked["error"]
    assert forked["parent_run_id"] == str(run_id)
    assert forked["result"]["deploy"]["release_id"] == done["result"]["deploy"]["release_id"]
    assert len(platform.releases(ENV)) == 1
