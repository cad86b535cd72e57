"""Fixtures of the chaos tests: a runs runtime on the module's database, to watch a run's events."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from agent_orchestrator.runs.runtime import RunsRuntime


@pytest.fixture
async def runtime(database_url: str) -> AsyncIterator[RunsRuntime]:
    rt = await RunsRuntime.open(database_url, pool_max=3)
    try:
        yield rt
    finally:
        await rt.close()
