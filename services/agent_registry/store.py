"""SQL access for the agent registry (table and score function in config/state/030_agent_registry.sql)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from services.agent_registry.models import HeartbeatRequest, RegisterRequest

COLUMNS = (
    "agent_id, agent_name, base_url, capabilities, capability_names, capacity, active_requests, status, "
    "tags, metadata, heartbeat_interval_seconds, last_seq, registered_at, last_heartbeat, status_changed_at"
)
SELECT_FOR_UPDATE = f"SELECT {COLUMNS}, token_hash FROM agent_registry WHERE agent_id = %s FOR UPDATE"
SELECT_ONE = f"SELECT {COLUMNS} FROM agent_registry WHERE agent_id = %s"
SELECT_BY_TOKEN = "SELECT agent_id FROM agent_registry WHERE token_hash = %s LIMIT 1"
SELECT_TOKEN_HASH = "SELECT token_hash FROM agent_registry WHERE agent_id = %s"
UPSERT = f"""
INSERT INTO agent_registry (agent_id, agent_name, base_url, capabilities, capability_names, capacity,
    active_requests, status, tags, metadata, token_hash, heartbeat_interval_seconds, last_seq,
    registered_at, last_heartbeat, status_changed_at, updated_at)
VALUES (%(agent_id)s, %(agent_name)s, %(base_url)s, %(capabilities)s, %(capability_names)s, %(capacity)s,
    0, 'idle', %(tags)s, %(metadata)s, %(token_hash)s, %(interval)s, -1, now(), now(), now(), now())
ON CONFLICT (agent_id) DO UPDATE SET
    agent_name = EXCLUDED.agent_name, base_url = EXCLUDED.base_url, capabilities = EXCLUDED.capabilities,
    capability_names = EXCLUDED.capability_names, capacity = EXCLUDED.capacity, active_requests = 0,
    status = 'idle', tags = EXCLUDED.tags, metadata = EXCLUDED.metadata, token_hash = EXCLUDED.token_hash,
    heartbeat_interval_seconds = EXCLUDED.heartbeat_interval_seconds, last_seq = -1,
    last_heartbeat = now(), updated_at = now(),
    status_changed_at = CASE WHEN agent_registry.status = 'idle' THEN agent_registry.status_changed_at
                             ELSE now() END
RETURNING {COLUMNS}
"""
UPDATE_HEARTBEAT = f"""
UPDATE agent_registry SET
    last_heartbeat = now(), updated_at = now(), status = %(status)s, active_requests = %(active)s,
    last_seq = greatest(last_seq, %(seq)s),
    status_changed_at = CASE WHEN status = %(status)s THEN status_changed_at ELSE now() END
WHERE agent_id = %(agent_id)s
RETURNING {COLUMNS}
"""
DELETE_ONE = f"DELETE FROM agent_registry WHERE agent_id = %s RETURNING {COLUMNS}"
# Live agents whose heartbeat is older than missed_heartbeats intervals go offline.
# SKIP LOCKED: several registry replicas may sweep at once without blocking each other.
SWEEP_STALE = f"""
WITH stale AS (
    SELECT agent_id, status AS previous_status FROM agent_registry
    WHERE status <> 'offline'
      AND last_heartbeat < now() - make_interval(secs => heartbeat_interval_seconds * %(missed)s)
    FOR UPDATE SKIP LOCKED
)
UPDATE agent_registry a SET status = 'offline', active_requests = 0, status_changed_at = now(),
    updated_at = now()
FROM stale WHERE a.agent_id = stale.agent_id
RETURNING stale.previous_status, {", ".join("a." + c.strip() for c in COLUMNS.split(","))}
"""
_SCORE = (
    "agent_registry_score(capability_names, status, active_requests, capacity, last_heartbeat, "
    "heartbeat_interval_seconds, %(wanted)s, %(missed)s)"
)
# Two statements rather than a CASE so the planner can use the GIN index for either operator.
SEARCH_ALL = f"""
SELECT {COLUMNS}, {_SCORE} AS score FROM agent_registry
WHERE capability_names @> %(wanted)s AND status = ANY(%(statuses)s)
ORDER BY score DESC, agent_id LIMIT %(limit)s
"""
SEARCH_ANY = f"""
SELECT {COLUMNS}, {_SCORE} AS score FROM agent_registry
WHERE capability_names && %(wanted)s AND status = ANY(%(statuses)s)
ORDER BY score DESC, agent_id LIMIT %(limit)s
"""
LIST_FILTERED = f"""
SELECT {COLUMNS} FROM agent_registry
WHERE (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(capability)s::text IS NULL OR capability_names @> ARRAY[%(capability)s::text])
  AND (%(tag)s::text IS NULL OR tags @> ARRAY[%(tag)s::text])
ORDER BY agent_id LIMIT %(limit)s
"""
COUNT_BY_STATUS = "SELECT status, count(*) AS n FROM agent_registry GROUP BY status"

LIVE_STATUSES = ["idle", "busy"]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class RegistrationConflict(Exception):
    """A live agent already holds this id at another base_url."""


@dataclass(frozen=True)
class Registration:
    row: dict[str, Any]
    created: bool
    previous_status: str | None
    capabilities_changed: bool


@dataclass(frozen=True)
class HeartbeatOutcome:
    row: dict[str, Any]
    previous_status: str
    applied_status: bool


def next_status(current: str, carried: str | None, seq: int | None, last_seq: int) -> tuple[str, bool]:
    """The status after a heartbeat, and whether the heartbeat's own status was applied.

    A heartbeat older than one already seen (seq not above last_seq) proves liveness only.
    A heartbeat without a status keeps busy/draining: it never clears a status it did not carry.
    An offline agent that beats again is alive: it comes back idle unless it says otherwise.
    """
    stale = seq is not None and seq <= last_seq
    if stale or carried is None:
        return ("idle" if current == "offline" else current), False
    return carried, True


class RegistryStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def register(
        self, req: RegisterRequest, token: str, presented_agent_token: str | None
    ) -> Registration:
        caps = req.capability_models()
        names = [c.name for c in caps]
        params = {
            "agent_id": req.agent_id,
            "agent_name": req.agent_name,
            "base_url": req.base_url,
            "capabilities": Jsonb([c.model_dump() for c in caps]),
            "capability_names": names,
            "capacity": req.capacity,
            "tags": req.tags,
            "metadata": Jsonb(req.metadata),
            "token_hash": hash_token(token),
            "interval": req.heartbeat_interval_seconds,
        }
        async with self.pool.connection() as conn, conn.transaction():
            existing = await (await conn.execute(SELECT_FOR_UPDATE, (req.agent_id,))).fetchone()
            if existing is not None and existing["status"] != "offline":
                own = (
                    presented_agent_token is not None
                    and hash_token(presented_agent_token) == (existing["token_hash"])
                )
                if existing["base_url"] != req.base_url and not own:
                    raise RegistrationConflict(
                        f"agent_id {req.agent_id!r} is registered by a live agent at another base_url; "
                        "re-register with that agent's token (X-Agent-Token) or wait until it is offline"
                    )
            row = await (await conn.execute(UPSERT, params)).fetchone()
        assert row is not None
        return Registration(
            row=row,
            created=existing is None,
            previous_status=existing["status"] if existing else None,
            capabilities_changed=existing is not None
            and sorted(existing["capability_names"]) != sorted(names),
        )

    async def heartbeat(self, agent_id: str, hb: HeartbeatRequest) -> HeartbeatOutcome | None:
        async with self.pool.connection() as conn, conn.transaction():
            current = await (await conn.execute(SELECT_FOR_UPDATE, (agent_id,))).fetchone()
            if current is None:
                return None
            status, applied = next_status(current["status"], hb.status, hb.seq, current["last_seq"])
            fresh = not _is_stale(hb, current)
            active = hb.active_requests if hb.active_requests is not None and fresh else None
            if active is None:
                active = current["active_requests"]
            params = {
                "agent_id": agent_id,
                "status": status,
                "active": active,
                "seq": hb.seq if hb.seq is not None else current["last_seq"],
            }
            row = await (await conn.execute(UPDATE_HEARTBEAT, params)).fetchone()
        assert row is not None
        return HeartbeatOutcome(row=row, previous_status=current["status"], applied_status=applied)

    async def get(self, agent_id: str) -> dict[str, Any] | None:
        async with self.pool.connection() as conn:
            return await (await conn.execute(SELECT_ONE, (agent_id,))).fetchone()

    async def token_hash(self, agent_id: str) -> str | None:
        async with self.pool.connection() as conn:
            row = await (await conn.execute(SELECT_TOKEN_HASH, (agent_id,))).fetchone()
        return row["token_hash"] if row else None

    async def owner_of_token(self, token: str) -> str | None:
        async with self.pool.connection() as conn:
            row = await (await conn.execute(SELECT_BY_TOKEN, (hash_token(token),))).fetchone()
        return row["agent_id"] if row else None

    async def deregister(self, agent_id: str) -> dict[str, Any] | None:
        async with self.pool.connection() as conn:
            return await (await conn.execute(DELETE_ONE, (agent_id,))).fetchone()

    async def list(
        self, status: str | None, capability: str | None, tag: str | None, limit: int
    ) -> list[dict[str, Any]]:
        params = {"status": status, "capability": capability, "tag": tag, "limit": limit}
        async with self.pool.connection() as conn:
            return await (await conn.execute(LIST_FILTERED, params)).fetchall()

    async def search(
        self, wanted: list[str], match_all: bool, missed: int, limit: int, statuses: list[str]
    ) -> list[dict[str, Any]]:
        params = {"wanted": wanted, "missed": missed, "limit": limit, "statuses": statuses}
        async with self.pool.connection() as conn:
            return await (await conn.execute(SEARCH_ALL if match_all else SEARCH_ANY, params)).fetchall()

    async def sweep(self, missed: int) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            return await (await conn.execute(SWEEP_STALE, {"missed": missed})).fetchall()

    async def counts(self) -> dict[str, int]:
        async with self.pool.connection() as conn:
            rows = await (await conn.execute(COUNT_BY_STATUS)).fetchall()
        return {r["status"]: int(r["n"]) for r in rows}


def _is_stale(hb: HeartbeatRequest, current: dict[str, Any]) -> bool:
    return hb.seq is not None and hb.seq <= current["last_seq"]
