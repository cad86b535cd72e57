-- Resource locks: a fast path for the common case, and acquisitions that do not wait for the WAL flush.
--
-- Most acquisitions find the resource free with nobody queued, and most releases free a lease nobody waits
-- for. Those cases now take four statements instead of about fifteen (the general procedures from
-- 010_resource_locks.sql stay, renamed, for everything else: first use of a resource, contention, queues,
-- renewal by the holder, shared/exclusive upgrades, expired leases).
--
-- Durability: an acquisition commits with synchronous_commit off unless the database sets
-- `devtools.durable_locks = on` (ALTER DATABASE ... SET devtools.durable_locks = on). This is safe because
-- safety rests on the fencing token, not on the lease row: a token is max(last + 1, clock in microseconds),
-- so an acquisition lost to a server crash can never have its token handed out again, and its holder's
-- next renewal (or the listener's reconnect check) finds the lease gone and stops the body. Renewals stay
-- durable; releases were already asynchronous (a lost release only lets the lease run out at its TTL).

ALTER FUNCTION acquire_resource_lock(text, text, integer, text, text, jsonb)
    RENAME TO _acquire_resource_lock_general;
ALTER FUNCTION release_resource_lock(text, text, bigint)
    RENAME TO _release_resource_lock_general;

-- Acquisition commits skip the WAL-flush wait unless the operator asked for durable acquisitions.
CREATE FUNCTION _lock_relax_commit() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('devtools.durable_locks', true), '') <> 'on' THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
END;
$$;

CREATE FUNCTION acquire_resource_lock(
    resource_id text,
    owner text,
    ttl_seconds integer DEFAULT 300,
    mode text DEFAULT 'exclusive',
    reason text DEFAULT NULL,
    metadata jsonb DEFAULT '{}'
) RETURNS TABLE (acquired boolean, fencing_token bigint, holder text, expires_at timestamptz, message text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    p_resource_id ALIAS FOR $1;
    p_owner ALIAS FOR $2;
    p_ttl ALIAS FOR $3;
    p_mode ALIAS FOR $4;
    p_reason ALIAS FOR $5;
    p_metadata ALIAS FOR $6;
    token bigint;
    expiry timestamptz;
BEGIN
    -- Invalid arguments are reported by the general procedure, with the same messages as ever.
    IF p_resource_id IS NOT NULL AND btrim(p_resource_id) <> '' AND p_owner IS NOT NULL
       AND btrim(p_owner) <> '' AND p_ttl > 0 AND p_mode IN ('exclusive', 'shared') THEN
        PERFORM _lock_relax_commit();
        -- Serialize on the resource's counter row, exactly as the general procedure does.
        SELECT t.last_token INTO token FROM resource_lock_tokens t WHERE t.resource_id = p_resource_id FOR UPDATE;
        IF FOUND AND NOT EXISTS (SELECT 1 FROM resource_locks l WHERE l.resource_id = p_resource_id)
                 AND NOT EXISTS (SELECT 1 FROM lock_wait_queue q WHERE q.resource_id = p_resource_id) THEN
            token := greatest(token + 1, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint);
            expiry := clock_timestamp() + make_interval(secs => p_ttl);
            WITH bumped AS (
                UPDATE resource_lock_tokens t SET last_token = token WHERE t.resource_id = p_resource_id
            ), held AS (
                INSERT INTO resource_locks (resource_id, owner, mode, fencing_token, expires_at, ttl_seconds,
                                            reason, metadata)
                VALUES (p_resource_id, p_owner, p_mode, token, expiry, p_ttl, p_reason,
                        coalesce(p_metadata, '{}'))
            )
            INSERT INTO lock_history (resource_id, owner, action, mode, fencing_token, wait_seconds, reason,
                                      metadata)
            VALUES (p_resource_id, p_owner, 'acquire', p_mode, token, 0, p_reason, coalesce(p_metadata, '{}'));
            acquired := true;
            fencing_token := token;
            holder := p_owner;
            expires_at := expiry;
            message := 'acquired ' || p_mode || ' ' || p_resource_id;
            RETURN NEXT;
            RETURN;
        END IF;
    END IF;
    RETURN QUERY SELECT * FROM _acquire_resource_lock_general(p_resource_id, p_owner, p_ttl, p_mode,
                                                              p_reason, p_metadata);
END;
$$;

CREATE FUNCTION release_resource_lock(resource_id text, owner text, fencing_token bigint)
RETURNS TABLE (released boolean, holder text, message text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    p_resource_id ALIAS FOR $1;
    p_owner ALIAS FOR $2;
    p_token ALIAS FOR $3;
BEGIN
    IF p_resource_id IS NOT NULL AND btrim(p_resource_id) <> '' AND p_owner IS NOT NULL
       AND btrim(p_owner) <> '' AND p_token IS NOT NULL THEN
        -- A release lost to a server crash only leaves the lease to run out at its TTL (never an overlap).
        PERFORM set_config('synchronous_commit', 'off', true);
        PERFORM 1 FROM resource_lock_tokens t WHERE t.resource_id = p_resource_id FOR UPDATE;
        -- Fast path: our own live lease. Expired or foreign leases go through the general procedure,
        -- which records timeouts and names the real holder.
        WITH gone AS (
            DELETE FROM resource_locks l
            WHERE l.resource_id = p_resource_id AND l.owner = p_owner AND l.fencing_token = p_token
              AND l.expires_at > clock_timestamp()
            RETURNING l.mode, l.acquired_at
        )
        INSERT INTO lock_history (resource_id, owner, action, mode, fencing_token, hold_seconds)
        SELECT p_resource_id, p_owner, 'release', gone.mode, p_token,
               extract(epoch FROM clock_timestamp() - gone.acquired_at)
        FROM gone;
        IF FOUND THEN
            IF EXISTS (SELECT 1 FROM lock_wait_queue q WHERE q.resource_id = p_resource_id) THEN
                PERFORM _lock_expire(p_resource_id);
                PERFORM _lock_notify_waiters(p_resource_id);
            END IF;
            released := true;
            holder := p_owner;
            message := 'released ' || p_resource_id;
            RETURN NEXT;
            RETURN;
        END IF;
    END IF;
    RETURN QUERY SELECT * FROM _release_resource_lock_general(p_resource_id, p_owner, p_token);
END;
$$;
