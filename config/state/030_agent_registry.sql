-- Agent registry: who is alive, what they can do, how loaded they are.
-- Search filters on the GIN-indexed capability_names array and orders by
-- agent_registry_score() (documented in docs/AGENT_REGISTRY.md).
CREATE TABLE agent_registry (
    agent_id                   text PRIMARY KEY
                               CHECK (agent_id ~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$'),
    agent_name                 text NOT NULL,
    base_url                   text NOT NULL,
    capabilities               jsonb NOT NULL DEFAULT '[]'::jsonb,
    capability_names           text[] NOT NULL DEFAULT '{}',
    capacity                   integer NOT NULL DEFAULT 1 CHECK (capacity > 0),
    active_requests            integer NOT NULL DEFAULT 0 CHECK (active_requests >= 0),
    status                     text NOT NULL DEFAULT 'idle'
                               CHECK (status IN ('idle', 'busy', 'draining', 'offline')),
    tags                       text[] NOT NULL DEFAULT '{}',
    metadata                   jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- sha256 of the per-agent bearer token; the token itself is never stored.
    token_hash                 text NOT NULL,
    heartbeat_interval_seconds double precision NOT NULL DEFAULT 10
                               CHECK (heartbeat_interval_seconds > 0),
    -- Highest heartbeat sequence number seen since the last registration:
    -- an older (reordered) heartbeat refreshes liveness but never changes status.
    last_seq                   bigint NOT NULL DEFAULT -1,
    registered_at              timestamptz NOT NULL DEFAULT now(),
    last_heartbeat             timestamptz NOT NULL DEFAULT now(),
    status_changed_at          timestamptz NOT NULL DEFAULT now(),
    updated_at                 timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX agent_registry_capability_names_gin ON agent_registry USING gin (capability_names);
CREATE INDEX agent_registry_tags_gin ON agent_registry USING gin (tags);
-- Telling "another agent's token" (403) from "no such token" (401).
CREATE INDEX agent_registry_token_hash_idx ON agent_registry (token_hash);
-- The sweeper scans live agents by heartbeat age.
CREATE INDEX agent_registry_live_heartbeat_idx ON agent_registry (last_heartbeat)
    WHERE status <> 'offline';

-- Ranking score in [0, 1]:
--   0.5 * coverage  (share of the wanted capabilities the agent has)
-- + 0.2 * health    (idle 1.0, busy 0.3, draining/offline 0.0)
-- + 0.2 * headroom  (1 - min(1, active_requests / capacity))
-- + 0.1 * recency   (1 - min(1, heartbeat age / (missed_heartbeats * heartbeat interval)))
CREATE FUNCTION agent_registry_score(
    p_names text[],
    p_status text,
    p_active integer,
    p_capacity integer,
    p_last_heartbeat timestamptz,
    p_interval double precision,
    p_wanted text[],
    p_missed integer
) RETURNS double precision
LANGUAGE sql STABLE AS $$
    SELECT
        0.5 * (CASE WHEN coalesce(cardinality(p_wanted), 0) = 0 THEN 1.0
                    ELSE (SELECT count(DISTINCT w) FROM unnest(p_wanted) AS w WHERE w = ANY (p_names))::float8
                         / (SELECT count(DISTINCT w) FROM unnest(p_wanted) AS w)
               END)
      + 0.2 * (CASE p_status WHEN 'idle' THEN 1.0 WHEN 'busy' THEN 0.3 ELSE 0.0 END)
      + 0.2 * (1.0 - least(1.0, p_active::float8 / greatest(p_capacity, 1)))
      + 0.1 * greatest(0.0, 1.0 - extract(epoch FROM (now() - p_last_heartbeat))::float8
                                  / (greatest(p_missed, 1) * p_interval))
$$;
