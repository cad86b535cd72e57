"""Fixtures the workflow tests share: fresh sample repositories, a pool on the module's database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from psycopg_pool import AsyncConnectionPool

from agent_orchestrator.demo.sample_repo import SampleRepo, create_sample_repo
from shared.db import open_pool
from support.tests.agents.processes import free_port


@pytest.fixture
def sample(tmp_path: Path) -> Callable[[], SampleRepo]:
    """A new sample repository (the demo's greeting service) at each call, on a port of its own."""
    count = iter(range(100))
    return lambda: create_sample_repo(tmp_path / f"repo{next(count)}", free_port())


@pytest.fixture
async def pool(database_url: str, request: pytest.FixtureRequest) -> AsyncIterator[AsyncConnectionPool]:
    """A small pool on the module's database, named after the test module (visible in pg_stat_activity)."""
    name = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    pool = await open_pool(database_url, min_size=1, max_size=4, name=f"{name}-tests")
    yield pool
    await pool.close()
