"""Replay from a checkpoint as a fork: a new run whose thread is a copy of the original's
root-graph history up to that checkpoint. The original run and thread are untouched.

The copy and the new run row commit in one transaction, so no worker can claim the
fork before its thread exists. The checkpoint's own pending writes are not copied:
the fork re-executes the step after that checkpoint (an interrupt there asks again).
The fork's `parent_run_id` links it to the original, so side effects the original
recorded with `effects.once` are not repeated by the fork.
"""

from __future__ import annotations

import uuid

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from agent_orchestrator.runs.models import Run
from agent_orchestrator.runs.queue import ENQUEUE_SQL

CHAIN_SQL = """
WITH RECURSIVE chain(checkpoint_id, parent_checkpoint_id) AS (
    SELECT checkpoint_id, parent_checkpoint_id FROM checkpoints
    WHERE thread_id = %(src)s AND checkpoint_ns = '' AND checkpoint_id = %(cp)s
    UNION
    SELECT c.checkpoint_id, c.parent_checkpoint_id FROM checkpoints c
    JOIN chain ON c.checkpoint_id = chain.parent_checkpoint_id
    WHERE c.thread_id = %(src)s AND c.checkpoint_ns = ''
)
SELECT checkpoint_id FROM chain
"""
COPY_CHECKPOINTS_SQL = """
INSERT INTO checkpoints
    (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata)
SELECT %(dst)s, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata
FROM checkpoints WHERE thread_id = %(src)s AND checkpoint_ns = '' AND checkpoint_id = ANY(%(ids)s)
"""
COPY_WRITES_SQL = """
INSERT INTO checkpoint_writes
    (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob)
SELECT %(dst)s, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob
FROM checkpoint_writes
WHERE thread_id = %(src)s AND checkpoint_ns = '' AND checkpoint_id = ANY(%(ids)s) AND checkpoint_id <> %(cp)s
"""
COPY_BLOBS_SQL = """
INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
SELECT %(dst)s, b.checkpoint_ns, b.channel, b.version, b.type, b.blob
FROM checkpoint_blobs b
WHERE b.thread_id = %(src)s AND b.checkpoint_ns = '' AND (b.channel, b.version) IN (
    SELECT v.key, v.value FROM checkpoints c
    CROSS JOIN LATERAL jsonb_each_text(c.checkpoint -> 'channel_versions') AS v
    WHERE c.thread_id = %(dst)s AND c.checkpoint_ns = ''
)
"""


class CheckpointNotFound(LookupError):
    """The run has no checkpoint with that id (replay answers 404)."""


async def fork_run(
    pool: AsyncConnectionPool, original: Run, checkpoint_id: str, *, created_by: str | None
) -> Run:
    """Queue a new run continuing from `checkpoint_id` of `original`'s thread."""
    new_id = uuid.uuid4()
    src, dst = str(original.id), str(new_id)
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(CHAIN_SQL, {"src": src, "cp": checkpoint_id})
        ids = [r["checkpoint_id"] for r in await cur.fetchall()]  # type: ignore[index]
        if not ids:
            raise CheckpointNotFound(f"run {original.id} has no checkpoint {checkpoint_id!r}")
        params = {"src": src, "dst": dst, "ids": ids, "cp": checkpoint_id}
        await conn.execute(COPY_CHECKPOINTS_SQL, params)
        await conn.execute(COPY_WRITES_SQL, params)
        await conn.execute(COPY_BLOBS_SQL, params)
        cur = await conn.execute(
            ENQUEUE_SQL,
            {
                "workflow": original.workflow,
                "input": Jsonb(original.input),
                "priority": original.priority,
                "not_before": None,
                "created_by": created_by,
                "queue": original.queue,
                "max_attempts": original.max_attempts,
                "parent_run_id": original.id,
                "forked_from_checkpoint": checkpoint_id,
                "id": new_id,
            },
        )
        row = await cur.fetchone()
    return Run.model_validate(row)
