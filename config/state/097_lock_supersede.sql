-- Supersede a lock held by an earlier attempt of the same run, in one statement: the lease is released
-- only when every holder of the resource is an exclusive lease of an earlier attempt of that run
-- (owner `run:<id>:<n>`, the caller being `run:<id>:<m>`). Checking the holders and then force-releasing
-- in two calls let another run acquire the resource in between and lose its lease to the second call.
-- Returns the holders it released (none: nothing to supersede).
CREATE FUNCTION supersede_lock(resource_id text, owner text, run_prefix text, reason text)
RETURNS text[]
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    p_resource_id ALIAS FOR $1;
    p_owner ALIAS FOR $2;
    p_prefix ALIAS FOR $3;
    p_reason ALIAS FOR $4;
    gone_owners text[];
BEGIN
    PERFORM _lock_require_id('resource_id', p_resource_id);
    PERFORM _lock_require_id('owner', p_owner);
    PERFORM _lock_require_id('reason', p_reason);
    IF p_prefix IS NULL OR p_prefix = '' OR left(p_owner, length(p_prefix)) <> p_prefix THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'run_prefix: must be a prefix of owner';
    END IF;
    -- The resource's token row serialises every acquire, release and expiry of it.
    PERFORM 1 FROM resource_lock_tokens t WHERE t.resource_id = p_resource_id FOR UPDATE;
    IF NOT EXISTS (SELECT 1 FROM resource_locks l WHERE l.resource_id = p_resource_id)
       OR EXISTS (
           SELECT 1 FROM resource_locks l
           WHERE l.resource_id = p_resource_id
             AND (l.mode <> 'exclusive' OR left(l.owner, length(p_prefix)) <> p_prefix OR l.owner = p_owner)
       ) THEN
        RETURN '{}';
    END IF;
    WITH gone AS (
        DELETE FROM resource_locks l WHERE l.resource_id = p_resource_id RETURNING *
    ), logged AS (
        INSERT INTO lock_history (resource_id, owner, action, mode, fencing_token, hold_seconds, reason, metadata)
        SELECT g.resource_id, g.owner, 'force_release', g.mode, g.fencing_token,
               extract(epoch FROM clock_timestamp() - g.acquired_at), p_reason,
               jsonb_build_object('admin', p_owner, 'superseded', true)
        FROM gone g
        RETURNING owner
    )
    SELECT coalesce(array_agg(owner), '{}') INTO gone_owners FROM logged;
    PERFORM _lock_notify_waiters(p_resource_id);
    RETURN gone_owners;
END;
$$;
