"""A database blip (issue 16, item 2): every connection the platform holds to its database is
terminated (`pg_terminate_backend`) while runs are in flight; every run still succeeds, with at
most one extra attempt. (A PostgreSQL restart: test_postgres_restart_chaos.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from agent_orchestrator.runs.runtime import RunsRuntime
from support.tests.chaos.db_blip import assert_all_succeeded_once_more_at_most, runs_held_in_deploy
from support.tests.workflows.flagship_platform import Platform, running_platform

pytestmark = pytest.mark.chaos

TERMINATE_SQL = """
SELECT application_name, pg_terminate_backend(pid) AS terminated FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
"""


@pytest.fixture(scope="module")
def platform(module_env: dict[str, str], log_dir: Path) -> Iterator[Platform]:
    with running_platform(module_env, log_dir, ["code-review", "cicd", "infrastructure"]) as running:
        yield running


def terminate_every_connection(database_url: str) -> list[str]:
    """What `pg_terminate_backend` of every other connection to the database ended (application names)."""
    with psycopg.connect(database_url, autocommit=True, application_name="db-chaos-terminator") as conn:
        rows = conn.execute(TERMINATE_SQL).fetchall()
    return sorted(name for name, terminated in rows if terminated)


async def test_runs_in_flight_survive_the_termination_of_every_database_connection(
    platform: Platform, runtime: RunsRuntime, database_url: str, tmp_path: Path
) -> None:
    async with runs_held_in_deploy(platform, runtime, database_url, tmp_path) as runs:
        terminated = terminate_every_connection(database_url)

    # The orchestrator's pools and listeners, the agents' lock managers, the registry's pool: all of them.
    assert any(name.startswith("devtools-infrastructure-locks") for name in terminated), terminated
    assert len(terminated) >= 8, terminated
    assert_all_succeeded_once_more_at_most(platform, runs)
