"""The platform's pools hand out live connections: one the server dropped (`pg_terminate_backend`, as
after a restart) is replaced instead of failing the next operation."""

from __future__ import annotations

import pytest

from agent_orchestrator.runs.checkpointing import open_checkpoint_pool
from shared.db import connect_async, open_pool

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("opener", [open_pool, open_checkpoint_pool])
async def test_a_connection_the_server_dropped_is_replaced_not_used(
    database_url: str, opener: object
) -> None:
    name = f"pool-check-{opener.__name__}"  # type: ignore[attr-defined]
    pool = await opener(database_url, min_size=2, max_size=2, name=name)  # type: ignore[operator]
    try:
        async with pool.connection() as conn:
            assert (await (await conn.execute("SELECT 1 AS one")).fetchone())["one"] == 1
        async with await connect_async(database_url, name="pool-check-killer") as killer:
            cur = await killer.execute(
                "SELECT count(*) AS n FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s) t",
                (name,),
            )
            assert (await cur.fetchone())["n"] == 2  # every pooled connection is dead now
        for _ in range(3):  # each checkout finds its connection dead and gets a fresh one
            async with pool.connection() as conn:
                assert (await (await conn.execute("SELECT 2 AS two")).fetchone())["two"] == 2
    finally:
        await pool.close()
