"""Bus fixtures shared by the event bus tests (imported by the root conftest)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shared.bus import EventBus
from support.tests.bus.helpers import FAST


@pytest.fixture
async def requester(redis_url: str, redis_prefix: str) -> AsyncIterator[EventBus]:
    """The orchestrator's end of the bus (a module's test keyspace)."""
    async with EventBus(redis_url, redis_prefix, agent_id="orchestrator", options=FAST) as bus:
        yield bus


@pytest.fixture
async def server(redis_url: str, redis_prefix: str) -> AsyncIterator[EventBus]:
    """A code-review agent's end of the bus."""
    async with EventBus(redis_url, redis_prefix, agent_id="code-review", options=FAST) as bus:
        yield bus
