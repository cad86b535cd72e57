-- Resource locks: lease-based, fenced, safe behind connection pools and PgBouncer transaction pooling.
--
-- No session-level state is held between calls: a lease is a row with an expiry. Every procedure is one
-- short transaction that serializes on the resource's counter row (SELECT ... FOR UPDATE), so concurrent
-- calls for one resource are linearized while different resources never contend.
--
-- Errors: invalid arguments raise SQLSTATE 'DL001' with COLUMN set to the argument's name.
-- Notifications: channel 'resource_lock_events', payload {"r": resource_id, "w": [queue ids to wake]}.

-- One row per resource ever locked, never deleted: the fencing token only grows, forever.
-- Tokens are max(last + 1, clock in microseconds): monotonic per resource, and crash-safe.
CREATE TABLE resource_lock_tokens (
    resource_id text PRIMARY KEY,
    last_token  bigint NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Current holders: one row for an exclusive holder, one per owner for shared holders.
CREATE TABLE resource_locks (
    resource_id   text NOT NULL REFERENCES resource_lock_tokens (resource_id),
    owner         text NOT NULL,
    mode          text NOT NULL CHECK (mode IN ('exclusive', 'shared')),
    fencing_token bigint NOT NULL,
    acquired_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    renewed_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at    timestamptz NOT NULL,
    ttl_seconds   integer NOT NULL,
    reason        text,
    metadata      jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (resource_id, owner)
);
CREATE INDEX resource_locks_expires_idx ON resource_locks (expires_at);

CREATE TABLE lock_history (
    id            bigserial PRIMARY KEY,
    resource_id   text NOT NULL,
    owner         text NOT NULL,
    action        text NOT NULL CHECK (action IN ('acquire', 'release', 'renew', 'timeout', 'force_release')),
    mode          text,
    fencing_token bigint,
    wait_seconds  double precision,
    hold_seconds  double precision,
    reason        text,
    metadata      jsonb NOT NULL DEFAULT '{}',
    at            timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX lock_history_resource_idx ON lock_history (resource_id, at);

-- Waiters: served by priority (higher first), FIFO within a priority. A waiter is alive while its
-- manager's listening backend (pid + start time) exists and its deadline has not passed, so a killed
-- waiter never blocks the queue.
CREATE TABLE lock_wait_queue (
    id               bigserial PRIMARY KEY,
    resource_id      text NOT NULL,
    owner            text NOT NULL,
    mode             text NOT NULL CHECK (mode IN ('exclusive', 'shared')),
    priority         integer NOT NULL DEFAULT 0,
    enqueued_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    deadline         timestamptz,
    listener_pid     integer,
    listener_started timestamptz
);
CREATE INDEX lock_wait_queue_order_idx ON lock_wait_queue (resource_id, priority DESC, id);
CREATE UNIQUE INDEX lock_wait_queue_owner_idx ON lock_wait_queue (resource_id, owner);


CREATE FUNCTION _lock_invalid(argument text, message text) RETURNS void
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'DL001', COLUMN = argument, MESSAGE = 'invalid ' || argument || ': ' || message;
END;
$$;

CREATE FUNCTION _lock_require_id(argument text, value text) RETURNS void
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    IF value IS NULL OR btrim(value) = '' THEN
        PERFORM _lock_invalid(argument, 'must be a non-empty string');
    END IF;
END;
$$;

-- A waiter's row is live while its listening backend exists and its deadline is in the future.
CREATE FUNCTION _lock_waiter_alive(q lock_wait_queue) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT (q.deadline IS NULL OR q.deadline > clock_timestamp())
       AND (q.listener_pid IS NULL OR EXISTS (
            SELECT 1 FROM pg_stat_activity a
            WHERE a.pid = q.listener_pid AND a.backend_start = q.listener_started))
$$;

-- Wake the waiters that may now proceed: the live head of the queue and, when it wants shared mode,
-- the shared waiters directly behind it. Delivered at commit.
CREATE FUNCTION _lock_notify_waiters(p_resource_id text) RETURNS void
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    ids bigint[] := '{}';
    w lock_wait_queue;
BEGIN
    FOR w IN SELECT * FROM lock_wait_queue WHERE resource_id = p_resource_id ORDER BY priority DESC, id LOOP
        CONTINUE WHEN NOT _lock_waiter_alive(w);
        EXIT WHEN w.mode = 'exclusive' AND cardinality(ids) > 0;
        ids := ids || w.id;
        EXIT WHEN w.mode = 'exclusive' OR cardinality(ids) >= 100;
    END LOOP;
    IF cardinality(ids) > 0 THEN
        PERFORM pg_notify('resource_lock_events', json_build_object('r', p_resource_id, 'w', ids)::text);
    END IF;
END;
$$;

-- Remove this resource's expired leases (recorded as 'timeout'); the caller holds the counter row lock.
CREATE FUNCTION _lock_expire(p_resource_id text) RETURNS integer
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    n integer;
BEGIN
    WITH gone AS (
        DELETE FROM resource_locks
        WHERE resource_id = p_resource_id AND expires_at <= clock_timestamp()
        RETURNING *
    )
    INSERT INTO lock_history (resource_id, owner, action, mode, fencing_token, hold_seconds, reason)
    SELECT resource_id, owner, 'timeout', mode, fencing_token,
           extract(epoch FROM expires_at - acquired_at), 'lease expired'
    FROM gone;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
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
    mine resource_locks;
    blocker resource_locks;
    me lock_wait_queue;
    ahead lock_wait_queue;
    wait_s double precision := 0;
    expiry timestamptz;
BEGIN
    PERFORM _lock_require_id('resource_id', p_resource_id);
    PERFORM _lock_require_id('owner', p_owner);
    IF p_ttl IS NULL OR p_ttl <= 0 THEN
        PERFORM _lock_invalid('ttl_seconds', 'must be a positive number of seconds, got ' || coalesce(p_ttl::text, 'null'));
    END IF;
    IF p_mode IS NULL OR p_mode NOT IN ('exclusive', 'shared') THEN
        PERFORM _lock_invalid('mode', 'must be ''exclusive'' or ''shared'', got ' || coalesce(quote_literal(p_mode), 'null'));
    END IF;

    -- Serialize every operation on this resource on its counter row (created on first use, kept forever).
    SELECT t.last_token INTO token FROM resource_lock_tokens t WHERE t.resource_id = p_resource_id FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO resource_lock_tokens (resource_id) VALUES (p_resource_id) ON CONFLICT DO NOTHING;
        SELECT t.last_token INTO token FROM resource_lock_tokens t WHERE t.resource_id = p_resource_id FOR UPDATE;
    END IF;
    PERFORM _lock_expire(p_resource_id);
    expiry := clock_timestamp() + make_interval(secs => p_ttl);

    -- The same owner acquiring again renews its lease (and keeps its token) unless it asks for an upgrade.
    SELECT * INTO mine FROM resource_locks l WHERE l.resource_id = p_resource_id AND l.owner = p_owner;
    IF FOUND AND (mine.mode = p_mode OR mine.mode = 'exclusive') THEN
        UPDATE resource_locks l SET expires_at = expiry, renewed_at = clock_timestamp(), ttl_seconds = p_ttl
        WHERE l.resource_id = p_resource_id AND l.owner = p_owner;
        INSERT INTO lock_history (resource_id, owner, action, mode, fencing_token, reason)
        VALUES (p_resource_id, p_owner, 'renew', mine.mode, mine.fencing_token, 're-acquired by its holder');
        RETURN QUERY SELECT true, mine.fencing_token, p_owner, expiry, 'renewed: already held by ' || p_owner;
        RETURN;
    END IF;

    -- Compatibility: exclusive needs no other holder; shared needs no exclusive holder.
    SELECT * INTO blocker FROM resource_locks l
    WHERE l.resource_id = p_resource_id AND l.owner <> p_owner
      AND (p_mode = 'exclusive' OR l.mode = 'exclusive')
    ORDER BY l.expires_at DESC LIMIT 1;
    IF FOUND THEN
        RETURN QUERY SELECT false, NULL::bigint, blocker.owner, blocker.expires_at,
            format('%s is held %s by %s (token %s) until %s', p_resource_id, blocker.mode, blocker.owner,
                   blocker.fencing_token, blocker.expires_at);
        RETURN;
    END IF;

    -- Queue order: no barging past live waiters that rank ahead (a caller not queued ranks last).
    -- Shared waiters may pass shared waiters ahead of them (they would be granted together).
    SELECT * INTO me FROM lock_wait_queue q WHERE q.resource_id = p_resource_id AND q.owner = p_owner;
    FOR ahead IN
        SELECT * FROM lock_wait_queue q
        WHERE q.resource_id = p_resource_id AND q.owner <> p_owner
          AND (me.id IS NULL OR q.priority > me.priority OR (q.priority = me.priority AND q.id < me.id))
        ORDER BY q.priority DESC, q.id
    LOOP
        CONTINUE WHEN p_mode = 'shared' AND ahead.mode = 'shared';
        IF _lock_waiter_alive(ahead) THEN
            RETURN QUERY SELECT false, NULL::bigint, NULL::text, NULL::timestamptz,
                format('%s is free but %s waits ahead in the queue (priority %s)', p_resource_id,
                       ahead.owner, ahead.priority);
            RETURN;
        END IF;
    END LOOP;

    IF me.id IS NOT NULL THEN
        wait_s := extract(epoch FROM clock_timestamp() - me.enqueued_at);
        DELETE FROM lock_wait_queue q WHERE q.id = me.id;
    END IF;
    IF mine.owner IS NOT NULL THEN  -- upgrade from shared to exclusive: the old shared lease ends here
        DELETE FROM resource_locks l WHERE l.resource_id = p_resource_id AND l.owner = p_owner;
    END IF;

    -- Strictly above the last token, and at least the clock in microseconds: even an acquisition lost
    -- to a server crash (with synchronous_commit off) can never have its token handed out again.
    token := greatest(token + 1, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint);
    UPDATE resource_lock_tokens t SET last_token = token WHERE t.resource_id = p_resource_id;
    INSERT INTO resource_locks (resource_id, owner, mode, fencing_token, expires_at, ttl_seconds, reason, metadata)
    VALUES (p_resource_id, p_owner, p_mode, token, expiry, p_ttl, p_reason, coalesce(p_metadata, '{}'));
    INSERT INTO lock_history (resource_id, owner, action, mode, fencing_token, wait_seconds, reason, metadata)
    VALUES (p_resource_id, p_owner, 'acquire', p_mode, token, wait_s, p_reason, coalesce(p_metadata, '{}'));
    IF p_mode = 'shared' AND me.id IS NOT NULL THEN
        PERFORM _lock_notify_waiters(p_resource_id);  -- shared waiters behind may join now
    END IF;
    RETURN QUERY SELECT true, token, p_owner, expiry, format('acquired %s %s', p_mode, p_resource_id);
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
    gone resource_locks;
    holders text;
BEGIN
    PERFORM _lock_require_id('resource_id', p_resource_id);
    PERFORM _lock_require_id('owner', p_owner);
    IF p_token IS NULL THEN
        PERFORM _lock_invalid('fencing_token', 'is required');
    END IF;
    PERFORM 1 FROM resource_lock_tokens t WHERE t.resource_id = p_resource_id FOR UPDATE;
    PERFORM _lock_expire(p_resource_id);

    DELETE FROM resource_locks l
    WHERE l.resource_id = p_resource_id AND l.owner = p_owner AND l.fencing_token = p_token
    RETURNING * INTO gone;
    IF gone.owner IS NULL THEN
        SELECT string_agg(format('%s (token %s, until %s)', l.owner, l.fencing_token, l.expires_at), ', ')
        INTO holders FROM resource_locks l WHERE l.resource_id = p_resource_id;
        RETURN QUERY SELECT false, holders,
            format('not released: %s with token %s does not hold %s; held by %s', p_owner, p_token,
                   p_resource_id, coalesce(holders, 'nobody'));
        RETURN;
    END IF;
    -- A release lost to a server crash only leaves the lease to run out at its TTL (never an overlap),
    -- so it need not wait for the WAL flush; acquisitions and renewals stay durable.
    PERFORM set_config('synchronous_commit', 'off', true);
    INSERT INTO lock_history (resource_id, owner, action, mode, fencing_token, hold_seconds)
    VALUES (p_resource_id, p_owner, 'release', gone.mode, p_token,
            extract(epoch FROM clock_timestamp() - gone.acquired_at));
    PERFORM _lock_notify_waiters(p_resource_id);
    RETURN QUERY SELECT true, p_owner, format('released %s', p_resource_id);
END;
$$;


CREATE FUNCTION renew_resource_lock(resource_id text, owner text, fencing_token bigint, ttl_seconds integer DEFAULT 300)
RETURNS TABLE (renewed boolean, expires_at timestamptz, message text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    p_resource_id ALIAS FOR $1;
    p_owner ALIAS FOR $2;
    p_token ALIAS FOR $3;
    p_ttl ALIAS FOR $4;
    expiry timestamptz;
BEGIN
    PERFORM _lock_require_id('resource_id', p_resource_id);
    PERFORM _lock_require_id('owner', p_owner);
    IF p_token IS NULL THEN
        PERFORM _lock_invalid('fencing_token', 'is required');
    END IF;
    IF p_ttl IS NULL OR p_ttl <= 0 THEN
        PERFORM _lock_invalid('ttl_seconds', 'must be a positive number of seconds, got ' || coalesce(p_ttl::text, 'null'));
    END IF;
    -- An expired row still present means nobody else acquired since (acquire deletes expired rows and
    -- bumps the token), so renewing it is safe: the token proves continuity.
    UPDATE resource_locks l
    SET expires_at = clock_timestamp() + make_interval(secs => p_ttl), renewed_at = clock_timestamp(),
        ttl_seconds = p_ttl
    WHERE l.resource_id = p_resource_id AND l.owner = p_owner AND l.fencing_token = p_token
    RETURNING l.expires_at INTO expiry;
    IF expiry IS NULL THEN
        RETURN QUERY SELECT false, NULL::timestamptz,
            format('lease lost: %s no longer holds %s with token %s', p_owner, p_resource_id, p_token);
        RETURN;
    END IF;
    INSERT INTO lock_history (resource_id, owner, action, fencing_token)
    VALUES (p_resource_id, p_owner, 'renew', p_token);
    RETURN QUERY SELECT true, expiry, format('renewed %s until %s', p_resource_id, expiry);
END;
$$;


CREATE FUNCTION check_lock_status(resource_id text)
RETURNS TABLE (
    locked boolean, mode text, holder text, owners text[], fencing_token bigint,
    acquired_at timestamptz, expires_at timestamptz, waiters integer, last_token bigint
)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
    p_resource_id ALIAS FOR $1;
BEGIN
    PERFORM _lock_require_id('resource_id', p_resource_id);
    RETURN QUERY
    SELECT count(l.owner) > 0,
           max(l.mode),
           string_agg(l.owner, ', ' ORDER BY l.fencing_token),
           coalesce(array_agg(l.owner ORDER BY l.fencing_token) FILTER (WHERE l.owner IS NOT NULL), '{}'),
           max(l.fencing_token),
           min(l.acquired_at),
           max(l.expires_at),
           (SELECT count(*)::integer FROM lock_wait_queue q WHERE q.resource_id = p_resource_id AND _lock_waiter_alive(q)),
           (SELECT t.last_token FROM resource_lock_tokens t WHERE t.resource_id = p_resource_id)
    FROM resource_locks l
    WHERE l.resource_id = p_resource_id AND l.expires_at > clock_timestamp();
END;
$$;


CREATE FUNCTION force_release_lock(resource_id text, admin text, reason text)
RETURNS TABLE (released integer, holders text[], message text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    p_resource_id ALIAS FOR $1;
    p_admin ALIAS FOR $2;
    p_reason ALIAS FOR $3;
    gone_owners text[];
BEGIN
    PERFORM _lock_require_id('resource_id', p_resource_id);
    PERFORM _lock_require_id('admin', p_admin);
    PERFORM _lock_require_id('reason', p_reason);
    PERFORM 1 FROM resource_lock_tokens t WHERE t.resource_id = p_resource_id FOR UPDATE;
    WITH gone AS (
        DELETE FROM resource_locks l WHERE l.resource_id = p_resource_id RETURNING *
    ), logged AS (
        INSERT INTO lock_history (resource_id, owner, action, mode, fencing_token, hold_seconds, reason, metadata)
        SELECT g.resource_id, g.owner, 'force_release', g.mode, g.fencing_token,
               extract(epoch FROM clock_timestamp() - g.acquired_at), p_reason, jsonb_build_object('admin', p_admin)
        FROM gone g
        RETURNING owner
    )
    SELECT coalesce(array_agg(owner), '{}') INTO gone_owners FROM logged;
    PERFORM _lock_notify_waiters(p_resource_id);
    RETURN QUERY SELECT cardinality(gone_owners), gone_owners,
        CASE WHEN cardinality(gone_owners) = 0 THEN format('%s was not locked', p_resource_id)
             ELSE format('%s force-released by %s (%s); previous holders: %s', p_resource_id, p_admin,
                         p_reason, array_to_string(gone_owners, ', ')) END;
END;
$$;


-- Periodic housekeeping: expired leases (logged as 'timeout') and dead or overdue waiters.
-- Returns the number of leases expired.
CREATE FUNCTION cleanup_expired_locks() RETURNS integer
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    r text;
    total integer := 0;
BEGIN
    FOR r IN
        SELECT DISTINCT l.resource_id FROM resource_locks l WHERE l.expires_at <= clock_timestamp()
        UNION
        SELECT DISTINCT q.resource_id FROM lock_wait_queue q WHERE NOT _lock_waiter_alive(q)
    LOOP
        PERFORM 1 FROM resource_lock_tokens t WHERE t.resource_id = r FOR UPDATE;
        total := total + _lock_expire(r);
        DELETE FROM lock_wait_queue q WHERE q.resource_id = r AND NOT _lock_waiter_alive(q);
        PERFORM _lock_notify_waiters(r);
    END LOOP;
    RETURN total;
END;
$$;


-- Join the wait queue (or move to a new priority/deadline when already queued). The listener pid is the
-- caller's LISTENing backend: the entry is ignored once that backend is gone.
CREATE FUNCTION enqueue_lock_waiter(
    resource_id text, owner text, mode text DEFAULT 'exclusive', priority integer DEFAULT 0,
    listener_pid integer DEFAULT NULL, wait_seconds double precision DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    p_resource_id ALIAS FOR $1;
    p_owner ALIAS FOR $2;
    p_mode ALIAS FOR $3;
    p_priority ALIAS FOR $4;
    p_pid ALIAS FOR $5;
    p_wait ALIAS FOR $6;
    started timestamptz;
    qid bigint;
BEGIN
    PERFORM _lock_require_id('resource_id', p_resource_id);
    PERFORM _lock_require_id('owner', p_owner);
    IF p_mode IS NULL OR p_mode NOT IN ('exclusive', 'shared') THEN
        PERFORM _lock_invalid('mode', 'must be ''exclusive'' or ''shared'', got ' || coalesce(quote_literal(p_mode), 'null'));
    END IF;
    IF p_wait IS NOT NULL AND p_wait < 0 THEN
        PERFORM _lock_invalid('wait_seconds', 'must not be negative');
    END IF;
    IF p_pid IS NOT NULL THEN
        SELECT a.backend_start INTO started FROM pg_stat_activity a WHERE a.pid = p_pid;
        IF started IS NULL THEN
            PERFORM _lock_invalid('listener_pid', format('no backend with pid %s', p_pid));
        END IF;
    END IF;
    INSERT INTO lock_wait_queue (resource_id, owner, mode, priority, deadline, listener_pid, listener_started)
    VALUES (p_resource_id, p_owner, p_mode, coalesce(p_priority, 0),
            clock_timestamp() + make_interval(secs => p_wait), p_pid, started)
    ON CONFLICT (resource_id, owner) DO UPDATE
        SET mode = EXCLUDED.mode, priority = EXCLUDED.priority, deadline = EXCLUDED.deadline,
            listener_pid = EXCLUDED.listener_pid, listener_started = EXCLUDED.listener_started
    RETURNING id INTO qid;
    RETURN qid;
END;
$$;


-- Leave the queue without the lock (timeout, cancellation); wakes whoever is now at the head.
CREATE FUNCTION leave_lock_queue(queue_id bigint) RETURNS boolean
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    r text;
BEGIN
    DELETE FROM lock_wait_queue q WHERE q.id = queue_id RETURNING q.resource_id INTO r;
    IF r IS NULL THEN
        RETURN false;
    END IF;
    PERFORM _lock_notify_waiters(r);
    RETURN true;
END;
$$;


CREATE VIEW active_locks_view AS
SELECT l.resource_id, l.owner, l.mode, l.fencing_token, l.acquired_at, l.expires_at, l.reason, l.metadata,
       extract(epoch FROM clock_timestamp() - l.acquired_at) AS held_seconds,
       extract(epoch FROM l.expires_at - clock_timestamp()) AS remaining_seconds
FROM resource_locks l
WHERE l.expires_at > clock_timestamp();

CREATE VIEW lock_statistics_view AS
SELECT h.resource_id,
       count(*) FILTER (WHERE h.action = 'acquire') AS acquisitions,
       count(*) FILTER (WHERE h.action = 'release') AS releases,
       count(*) FILTER (WHERE h.action = 'renew') AS renewals,
       count(*) FILTER (WHERE h.action = 'timeout') AS timeouts,
       count(*) FILTER (WHERE h.action = 'force_release') AS force_releases,
       avg(h.wait_seconds) FILTER (WHERE h.action = 'acquire') AS avg_wait_seconds,
       max(h.wait_seconds) FILTER (WHERE h.action = 'acquire') AS max_wait_seconds,
       avg(h.hold_seconds) AS avg_hold_seconds,
       max(h.hold_seconds) AS max_hold_seconds,
       max(h.fencing_token) AS last_token,
       max(h.at) AS last_activity
FROM lock_history h
GROUP BY h.resource_id;

CREATE VIEW lock_contention_view AS
SELECT h.resource_id,
       count(*) AS acquisitions,
       count(*) FILTER (WHERE h.wait_seconds > 0) AS contended_acquisitions,
       round(100.0 * count(*) FILTER (WHERE h.wait_seconds > 0) / count(*), 1) AS contention_pct,
       avg(h.wait_seconds) FILTER (WHERE h.wait_seconds > 0) AS avg_contended_wait_seconds,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY h.wait_seconds) AS p99_wait_seconds,
       (SELECT count(*) FROM lock_wait_queue q WHERE q.resource_id = h.resource_id) AS waiting_now
FROM lock_history h
WHERE h.action = 'acquire'
GROUP BY h.resource_id;

CREATE VIEW wait_queue_view AS
SELECT q.id AS queue_id, q.resource_id, q.owner, q.mode, q.priority,
       row_number() OVER (PARTITION BY q.resource_id ORDER BY q.priority DESC, q.id) AS position,
       q.enqueued_at, q.deadline,
       extract(epoch FROM clock_timestamp() - q.enqueued_at) AS waited_seconds,
       _lock_waiter_alive(q) AS alive
FROM lock_wait_queue q;
