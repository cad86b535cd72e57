"""Checkpoint and run retention: what the upstream Postgres saver does not offer.

1. Finished runs (succeeded, failed, cancelled) whose `finished_at` is older than the
   retention lose their whole thread (checkpoints, writes, blobs) and their progress events
   (`run_events`). The run row (status, result, error, lineage) stays as the record of what ran,
   unless a run retention is given (`runs_older_than`): finished runs older than that are
   deleted with everything they own (events, recorded effects, thread). A run that still has
   forks (replays) is kept: a fork's exactly-once record reaches into its parent's effects.
2. Every other thread keeps only its last K checkpoints per namespace (newest by
   checkpoint id, which LangGraph makes time-ordered). Writes of deleted checkpoints go,
   blobs that no kept checkpoint references go, and a kept checkpoint whose parent was
   deleted gets a NULL parent. The latest checkpoint is always kept, so a pruned thread
   still loads (`aget_state`) with its latest state and can resume. Threads of runs that
   are running right now are left alone.

Each thread is trimmed in one REPEATABLE READ transaction, so a checkpoint written
meanwhile is neither seen nor deleted (the same argument as upstream `keep_latest`).
Threads using a LangGraph DeltaChannel are skipped: their state is rebuilt from older
checkpoints' writes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

TABLES_EXIST_SQL = "SELECT to_regclass('checkpoints') IS NOT NULL AS ok"
EXPIRED_THREADS_SQL = """
SELECT id::text AS thread_id FROM runs
WHERE status IN ('succeeded', 'failed', 'cancelled') AND finished_at < now() - %s
  AND EXISTS (SELECT 1 FROM checkpoints c WHERE c.thread_id = runs.id::text)
"""
DELETE_THREADS_SQL = (
    ("checkpoints", "DELETE FROM checkpoints WHERE thread_id = ANY(%s)"),
    ("writes", "DELETE FROM checkpoint_writes WHERE thread_id = ANY(%s)"),
    ("blobs", "DELETE FROM checkpoint_blobs WHERE thread_id = ANY(%s)"),
)
FINISHED = "('succeeded', 'failed', 'cancelled')"
EXPIRED_EVENTS_SQL = f"""
DELETE FROM run_events e USING runs r
WHERE e.run_id = r.id AND r.status IN {FINISHED} AND r.finished_at < now() - %s
"""
EXPIRED_RUNS_SQL = f"""
DELETE FROM runs r
WHERE r.status IN {FINISHED} AND r.finished_at < now() - %s
  AND NOT EXISTS (SELECT 1 FROM runs fork WHERE fork.parent_run_id = r.id)
RETURNING r.id::text AS thread_id
"""
OVERFULL_SQL = """
SELECT c.thread_id, c.checkpoint_ns FROM checkpoints c
WHERE NOT EXISTS (SELECT 1 FROM runs r WHERE r.id::text = c.thread_id AND r.status = 'running')
GROUP BY c.thread_id, c.checkpoint_ns
HAVING count(*) > %s
ORDER BY c.thread_id, c.checkpoint_ns
"""
SNAPSHOT_SQL = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"
DELTA_SQL = """
SELECT EXISTS (
    SELECT 1 FROM checkpoints WHERE thread_id = %s
    AND (metadata ? 'counters_since_delta_snapshot' OR metadata ? 'delta_writes_versioned')
) AS delta
"""
KEPT_SQL = """
SELECT checkpoint_id FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = %s
ORDER BY checkpoint_id DESC LIMIT %s
"""
TRIM_WRITES_SQL = """
DELETE FROM checkpoint_writes WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id <> ALL(%s)
"""
TRIM_CHECKPOINTS_SQL = """
WITH deleted AS (
    DELETE FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = %s AND checkpoint_id <> ALL(%s)
    RETURNING checkpoint -> 'channel_versions' AS versions
)
SELECT (SELECT count(*) FROM deleted) AS n,
       coalesce((SELECT array_agg(DISTINCT v.key || E'\\x1f' || v.value)
                 FROM deleted CROSS JOIN LATERAL jsonb_each_text(deleted.versions) AS v), '{}') AS freed
"""
DETACH_PARENTS_SQL = """
UPDATE checkpoints SET parent_checkpoint_id = NULL
WHERE thread_id = %s AND checkpoint_ns = %s AND parent_checkpoint_id <> ALL(%s)
"""
# Blobs of (channel, version) pairs freed by the deleted checkpoints that no kept one uses.
TRIM_BLOBS_SQL = """
DELETE FROM checkpoint_blobs b
WHERE b.thread_id = %(thread)s AND b.checkpoint_ns = %(ns)s
  AND b.channel || E'\\x1f' || b.version = ANY(%(freed)s)
  AND NOT EXISTS (
      SELECT 1 FROM checkpoints c
      WHERE c.thread_id = %(thread)s AND c.checkpoint_ns = %(ns)s
        AND c.checkpoint -> 'channel_versions' ->> b.channel = b.version)
"""


@dataclass
class PruneReport:
    threads_deleted: int = 0
    threads_trimmed: int = 0
    checkpoints_deleted: int = 0
    writes_deleted: int = 0
    blobs_deleted: int = 0
    events_deleted: int = 0
    runs_deleted: int = 0
    skipped_delta_threads: list[str] = field(default_factory=list)


class PruneArgumentError(ValueError):
    """A retention argument is out of range; the message names it."""


def parse_duration(text: str, *, name: str = "--older-than") -> timedelta:
    """'7d', '12h', '30m', '45s' (or a bare number of days) -> timedelta."""
    units = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds", "w": "weeks"}
    raw = text.strip().lower()
    unit = raw[-1] if raw and raw[-1] in units else "d"
    number = raw[:-1] if raw and raw[-1] in units else raw
    try:
        value = float(number)
    except ValueError:
        raise PruneArgumentError(
            f"{name}: expected a duration like 7d, 12h, 30m or 45s (got {text!r})"
        ) from None
    if value < 0:
        raise PruneArgumentError(f"{name}: must not be negative (got {text!r})")
    return timedelta(**{units[unit]: value})


async def _delete_threads(conn: AsyncConnection, threads: list[str], report: PruneReport) -> None:
    """Delete whole threads; call inside a transaction."""
    counts = {what: (await conn.execute(sql, (threads,))).rowcount for what, sql in DELETE_THREADS_SQL}
    report.checkpoints_deleted += counts["checkpoints"]
    report.writes_deleted += counts["writes"]
    report.blobs_deleted += counts["blobs"]


async def _delete_expired(conn: AsyncConnection, older_than: timedelta, report: PruneReport) -> None:
    async with conn.transaction():
        report.events_deleted += (await conn.execute(EXPIRED_EVENTS_SQL, (older_than,))).rowcount
    cur = await conn.execute(EXPIRED_THREADS_SQL, (older_than,))
    threads = [r["thread_id"] for r in await cur.fetchall()]  # type: ignore[index,call-overload]
    if not threads:
        return
    async with conn.transaction():
        await _delete_threads(conn, threads, report)
    report.threads_deleted += len(threads)


async def _delete_runs(conn: AsyncConnection, older_than: timedelta, report: PruneReport) -> None:
    # Events and recorded effects go with the row (ON DELETE CASCADE); the thread is no table's
    # child, so it is deleted here, in the same transaction.
    async with conn.transaction():
        cur = await conn.execute(EXPIRED_RUNS_SQL, (older_than,))
        runs = [r["thread_id"] for r in await cur.fetchall()]  # type: ignore[index,call-overload]
        if runs:
            await _delete_threads(conn, runs, report)
    report.runs_deleted += len(runs)


async def _trim_thread(conn: AsyncConnection, thread: str, ns: str, keep: int, report: PruneReport) -> None:
    async with conn.transaction():
        await conn.execute(SNAPSHOT_SQL)
        delta = await (await conn.execute(DELTA_SQL, (thread,))).fetchone()
        if delta and delta["delta"]:  # type: ignore[call-overload]
            report.skipped_delta_threads.append(thread)
            return
        kept_rows = await (await conn.execute(KEPT_SQL, (thread, ns, keep))).fetchall()
        kept = [r["checkpoint_id"] for r in kept_rows]  # type: ignore[call-overload]
        if not kept:
            return
        writes = await conn.execute(TRIM_WRITES_SQL, (thread, ns, kept))
        trimmed = await (await conn.execute(TRIM_CHECKPOINTS_SQL, (thread, ns, kept))).fetchone()
        await conn.execute(DETACH_PARENTS_SQL, (thread, ns, kept))
        freed = list(trimmed["freed"]) if trimmed else []  # type: ignore[call-overload]
        blobs = await conn.execute(TRIM_BLOBS_SQL, {"thread": thread, "ns": ns, "freed": freed})
    report.threads_trimmed += 1
    report.checkpoints_deleted += int(trimmed["n"]) if trimmed else 0  # type: ignore[call-overload]
    report.writes_deleted += writes.rowcount
    report.blobs_deleted += blobs.rowcount


async def prune_checkpoints(
    pool: AsyncConnectionPool,
    *,
    older_than: timedelta,
    keep_last: int | None,
    runs_older_than: timedelta | None = None,
) -> PruneReport:
    """Apply the retention rules (see the module docstring); `keep_last=None` skips trimming and
    `runs_older_than=None` keeps every run row."""
    if keep_last is not None and keep_last < 1:
        raise PruneArgumentError(f"--keep-last: must be at least 1 (got {keep_last})")
    report = PruneReport()
    async with pool.connection() as conn:
        ok = await (await conn.execute(TABLES_EXIST_SQL)).fetchone()
        if not ok or not ok["ok"]:  # type: ignore[call-overload]
            return report  # the saver never ran here: nothing to prune
        if runs_older_than is not None:
            await _delete_runs(conn, runs_older_than, report)
        await _delete_expired(conn, older_than, report)
        if keep_last is not None:
            cur = await conn.execute(OVERFULL_SQL, (keep_last,))
            for row in await cur.fetchall():
                await _trim_thread(conn, row["thread_id"], row["checkpoint_ns"], keep_last, report)  # type: ignore[call-overload]
    log.info("checkpoints pruned", extra={"report": report.__dict__})
    return report
