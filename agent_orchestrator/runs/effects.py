"""Side effects recorded once per run and step: `await once(pool, run_id, step_key, fn)`.

Why this gives "a resumed or replayed run never does it twice":

1. A node calls ``once(...)``; if ``run_step_effects`` already holds (run, step) - for
   this run or a run it was forked from - the recorded result is returned and ``fn``
   is not called.
2. Otherwise ``fn()`` runs and its result is inserted (``ON CONFLICT DO NOTHING``) in
   one autocommit statement. If a concurrent executor of the same run (a worker that
   lost its lease but has not noticed) recorded first, its result wins and is returned.
3. The node returns; LangGraph then writes the checkpoint after that step (runs use
   ``durability="sync"``). The record is therefore always committed *before* the
   checkpoint that follows the effect, so a resume from any checkpoint either is past
   the step (the node does not run) or re-runs the node and finds the record.

The one gap: a crash after ``fn`` did its work but before the insert committed. Then
the effect runs again on resume. So the real side effect must itself be idempotent or
fenced (a deploy of release X to env Y that is a no-op when X is live, a lock's
fencing token checked by the target). ``once`` makes the repeat rare and visible; it
cannot make an external system transactional with our database.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from prometheus_client import Counter
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

EFFECTS = Counter("devtools_run_effects_total", "Side effects requested through effects.once", ["outcome"])

# The run and the runs it was forked from (a replay must not redo its origin's effects).
LOOKUP_SQL = """
WITH RECURSIVE lineage(id, depth) AS (
    SELECT id, 0 FROM runs WHERE id = %(run_id)s
    UNION ALL
    SELECT r.parent_run_id, l.depth + 1 FROM runs r JOIN lineage l ON r.id = l.id
    WHERE r.parent_run_id IS NOT NULL AND l.depth < 100
)
SELECT e.result FROM run_step_effects e JOIN lineage l ON e.run_id = l.id
WHERE e.step_key = %(step_key)s
ORDER BY l.depth
LIMIT 1
"""
RECORD_SQL = """
WITH inserted AS (
    INSERT INTO run_step_effects (run_id, step_key, result) VALUES (%(run_id)s, %(step_key)s, %(result)s)
    ON CONFLICT (run_id, step_key) DO NOTHING
    RETURNING result, true AS fresh
)
SELECT result, fresh FROM inserted
UNION ALL
SELECT result, false FROM run_step_effects
WHERE run_id = %(run_id)s AND step_key = %(step_key)s AND NOT EXISTS (SELECT 1 FROM inserted)
"""


class EffectNotSerializable(TypeError):
    """The effect's result must be JSON (it is stored and returned on every later call)."""


async def recorded(pool: AsyncConnectionPool, run_id: UUID | str, step_key: str) -> Any | None:
    """The recorded result of (run or its fork origin, step), wrapped as {"value": ...}; None if none."""
    async with pool.connection() as conn:
        cur = await conn.execute(LOOKUP_SQL, {"run_id": str(run_id), "step_key": step_key})
        row = await cur.fetchone()
    return None if row is None else row["result"]  # type: ignore[index]


async def once[T](
    pool: AsyncConnectionPool, run_id: UUID | str, step_key: str, fn: Callable[[], Awaitable[T]]
) -> T:
    """Run ``fn`` unless (run, step_key) already has a recorded result; return the (recorded) result."""
    if not step_key:
        raise ValueError("step_key must be a non-empty string naming the step (e.g. 'deploy:staging')")
    found = await recorded(pool, run_id, step_key)
    if found is not None:
        EFFECTS.labels("replayed").inc()
        log.info("effect already done; returning its record", extra={"run_id": str(run_id), "step": step_key})
        return found["value"]  # type: ignore[no-any-return]
    value = await fn()
    try:
        payload = json.loads(json.dumps({"value": value}))
    except (TypeError, ValueError) as exc:
        raise EffectNotSerializable(f"effect {step_key!r} returned a non-JSON result: {exc}") from exc
    async with pool.connection() as conn:
        cur = await conn.execute(
            RECORD_SQL, {"run_id": str(run_id), "step_key": step_key, "result": Jsonb(payload)}
        )
        row = await cur.fetchone()
    assert row is not None
    if not row["fresh"]:  # type: ignore[index]
        # Another executor of this run recorded first; its result is the one that counts.
        EFFECTS.labels("raced").inc()
        log.warning("effect recorded concurrently", extra={"run_id": str(run_id), "step": step_key})
        return row["result"]["value"]  # type: ignore[index,no-any-return]
    EFFECTS.labels("executed").inc()
    return value


async def run_once[T](step_key: str, fn: Callable[[], Awaitable[T]]) -> T:
    """`once` for the run the calling node executes in (see `agent_orchestrator.runs.context`)."""
    from agent_orchestrator.runs.context import current_run

    ctx = current_run()
    return await once(ctx.pool, ctx.run_id, step_key, fn)
