"""Fixtures of the task-store tests: a pool on the module's database, the store, a ticket row, and a
capability of the test's own (claims filter by it, so tests sharing a database never see each
other's ready tasks)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from uuid import UUID

import pytest
from psycopg_pool import AsyncConnectionPool

from agent_orchestrator.tasks import TaskStore
from shared.db import open_pool
from support.tests.tasks.helpers import insert_ticket


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    # Several connections: concurrent claimers each need their own.
    pool = await open_pool(database_url, min_size=1, max_size=6, name="tasks-tests")
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
def store(pool: AsyncConnectionPool) -> TaskStore:
    return TaskStore(pool)


@pytest.fixture
async def ticket_id(pool: AsyncConnectionPool) -> UUID:
    return await insert_ticket(pool)


@pytest.fixture
def capability() -> str:
    return f"cap-{uuid.uuid4().hex[:10]}"
