"""A PostgreSQL restart (issue 16, item 2): the platform runs on a PostgreSQL server of this module's
own (support/tests/chaos/private_postgres.py; the shared server is never restarted), which is
stopped (fast shutdown: every connection ended) while runs are in flight, and started again once
two of them have finished deploying and wait to record it. Every run still succeeds, with at most
one extra attempt."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_orchestrator.runs.runtime import RunsRuntime
from services.infrastructure.env_state import EnvironmentDir
from support.tests.agents.processes import wait_until
from support.tests.chaos.db_blip import assert_all_succeeded_once_more_at_most, runs_held_in_deploy
from support.tests.chaos.private_postgres import PrivatePostgres
from support.tests.workflows.flagship_platform import Platform, running_platform

pytestmark = pytest.mark.chaos


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres.create()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="module")
def database_url(private_postgres: PrivatePostgres) -> str:
    """This module's database is the private server's (module_env and runtime use it)."""
    return private_postgres.url


@pytest.fixture(scope="module")
def platform(module_env: dict[str, str], log_dir: Path) -> Iterator[Platform]:
    with running_platform(module_env, log_dir, ["code-review", "cicd", "infrastructure"]) as running:
        yield running


def deployed(platform: Platform, environment: str) -> bool:
    """The infrastructure agent has judged the environment's release healthy (on disk, no database)."""
    env = EnvironmentDir(platform.data_dir, environment)
    current = env.load().current_release
    return current is not None and env.release_info(current).outcome == "healthy"


async def test_runs_in_flight_survive_a_postgres_restart(
    platform: Platform,
    runtime: RunsRuntime,
    private_postgres: PrivatePostgres,
    database_url: str,
    tmp_path: Path,
) -> None:
    async with runs_held_in_deploy(platform, runtime, database_url, tmp_path) as runs:
        private_postgres.stop()
        # While the server is down, two deploys finish: their runs must record that with no database.
        for run in runs[2:]:
            run.gate.touch()
        for run in runs[2:]:
            wait_until(lambda r=run: deployed(platform, r.environment), deadline_s=60, what="deployed")
        private_postgres.start()

    assert_all_succeeded_once_more_at_most(platform, runs)
