-- Workflow state with optimistic locking: every change names the version it read, and a mismatch
-- returns the current version and data instead of overwriting (compare-and-set).
--
-- Errors: SQLSTATE 'DW001' invalid argument (COLUMN = argument name), 'DW002' invalid status transition,
-- 'DW003' unknown workflow or checkpoint, 'DW004' workflow id already exists.

CREATE TABLE workflow_state (
    workflow_id          text PRIMARY KEY CHECK (btrim(workflow_id) <> ''),
    workflow_type        text NOT NULL CHECK (btrim(workflow_type) <> ''),
    current_step         text,
    state_data           jsonb NOT NULL DEFAULT '{}',
    participating_agents text[] NOT NULL DEFAULT '{}',
    status               text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'paused', 'waiting_approval', 'completed', 'failed', 'cancelled')),
    version              bigint NOT NULL DEFAULT 1,
    started_at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    completed_at         timestamptz,
    error_message        text,
    metadata             jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX workflow_state_status_idx ON workflow_state (status, completed_at);
CREATE INDEX workflow_state_type_idx ON workflow_state (workflow_type, started_at);

CREATE TABLE workflow_checkpoints (
    id               bigserial PRIMARY KEY,
    workflow_id      text NOT NULL REFERENCES workflow_state (workflow_id) ON DELETE CASCADE,
    step             text NOT NULL,
    agent            text,
    data             jsonb NOT NULL,
    duration_seconds double precision,
    status           text NOT NULL DEFAULT 'completed' CHECK (status IN ('completed', 'failed', 'skipped')),
    workflow_version bigint NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX workflow_checkpoints_workflow_idx ON workflow_checkpoints (workflow_id, id);

-- Allowed status transitions; terminal states have none (a completed workflow never runs again).
CREATE TABLE workflow_status_transitions (
    from_status text NOT NULL,
    to_status   text NOT NULL,
    PRIMARY KEY (from_status, to_status)
);
INSERT INTO workflow_status_transitions (from_status, to_status) VALUES
    ('pending', 'running'), ('pending', 'cancelled'), ('pending', 'failed'),
    ('running', 'paused'), ('running', 'waiting_approval'), ('running', 'completed'),
    ('running', 'failed'), ('running', 'cancelled'),
    ('paused', 'running'), ('paused', 'cancelled'), ('paused', 'failed'),
    ('waiting_approval', 'running'), ('waiting_approval', 'cancelled'), ('waiting_approval', 'failed');


CREATE FUNCTION _workflow_invalid(argument text, message text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'DW001', COLUMN = argument, MESSAGE = 'invalid ' || argument || ': ' || message;
END;
$$;

CREATE FUNCTION _workflow_not_found(p_workflow_id text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'DW003', COLUMN = 'workflow_id',
        MESSAGE = format('unknown workflow_id: %s', p_workflow_id);
END;
$$;


CREATE FUNCTION create_workflow_state(
    p_workflow_id text,
    p_workflow_type text,
    p_state_data jsonb DEFAULT '{}',
    p_participating_agents text[] DEFAULT '{}',
    p_metadata jsonb DEFAULT '{}',
    p_current_step text DEFAULT NULL
) RETURNS SETOF workflow_state
LANGUAGE plpgsql AS $$
BEGIN
    IF p_workflow_id IS NULL OR btrim(p_workflow_id) = '' THEN
        PERFORM _workflow_invalid('workflow_id', 'must be a non-empty string');
    END IF;
    IF p_workflow_type IS NULL OR btrim(p_workflow_type) = '' THEN
        PERFORM _workflow_invalid('workflow_type', 'must be a non-empty string');
    END IF;
    IF p_state_data IS NOT NULL AND jsonb_typeof(p_state_data) <> 'object' THEN
        PERFORM _workflow_invalid('state_data', 'must be a JSON object');
    END IF;
    RETURN QUERY
    INSERT INTO workflow_state (workflow_id, workflow_type, current_step, state_data, participating_agents, metadata)
    VALUES (p_workflow_id, p_workflow_type, p_current_step, coalesce(p_state_data, '{}'),
            coalesce(p_participating_agents, '{}'), coalesce(p_metadata, '{}'))
    ON CONFLICT (workflow_id) DO NOTHING
    RETURNING *;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'DW004', COLUMN = 'workflow_id',
            MESSAGE = format('workflow_id already exists: %s', p_workflow_id);
    END IF;
END;
$$;


-- Compare-and-set. NULL arguments leave a field unchanged. On a version mismatch nothing is written and
-- the current version and data come back, so a caller can re-apply its change without another read.
CREATE FUNCTION update_workflow_state(
    p_workflow_id text,
    p_expected_version bigint,
    p_state_data jsonb,
    p_current_step text DEFAULT NULL,
    p_participating_agents text[] DEFAULT NULL,
    p_metadata jsonb DEFAULT NULL
) RETURNS TABLE (updated boolean, version bigint, state_data jsonb, message text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    cur workflow_state;
BEGIN
    IF p_expected_version IS NULL OR p_expected_version < 1 THEN
        PERFORM _workflow_invalid('expected_version', 'must be a positive version number');
    END IF;
    IF p_state_data IS NOT NULL AND jsonb_typeof(p_state_data) <> 'object' THEN
        PERFORM _workflow_invalid('state_data', 'must be a JSON object');
    END IF;
    UPDATE workflow_state w
    SET state_data = coalesce(p_state_data, w.state_data),
        current_step = coalesce(p_current_step, w.current_step),
        participating_agents = coalesce(p_participating_agents, w.participating_agents),
        metadata = coalesce(p_metadata, w.metadata),
        version = w.version + 1,
        updated_at = clock_timestamp()
    WHERE w.workflow_id = p_workflow_id AND w.version = p_expected_version
    RETURNING * INTO cur;
    IF cur.workflow_id IS NOT NULL THEN
        RETURN QUERY SELECT true, cur.version, cur.state_data, format('updated to version %s', cur.version);
        RETURN;
    END IF;
    SELECT * INTO cur FROM workflow_state w WHERE w.workflow_id = p_workflow_id;
    IF NOT FOUND THEN
        PERFORM _workflow_not_found(p_workflow_id);
    END IF;
    RETURN QUERY SELECT false, cur.version, cur.state_data,
        format('version conflict: expected %s, current is %s', p_expected_version, cur.version);
END;
$$;


-- Record a checkpoint of the workflow's current data (or of p_data when given).
CREATE FUNCTION create_workflow_checkpoint(
    p_workflow_id text,
    p_step text,
    p_agent text DEFAULT NULL,
    p_data jsonb DEFAULT NULL,
    p_duration_seconds double precision DEFAULT NULL,
    p_status text DEFAULT 'completed'
) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    cur workflow_state;
    new_id bigint;
BEGIN
    IF p_step IS NULL OR btrim(p_step) = '' THEN
        PERFORM _workflow_invalid('step', 'must be a non-empty string');
    END IF;
    IF p_status IS NULL OR p_status NOT IN ('completed', 'failed', 'skipped') THEN
        PERFORM _workflow_invalid('status', format('must be completed, failed or skipped, got %L', p_status));
    END IF;
    IF p_duration_seconds IS NOT NULL AND p_duration_seconds < 0 THEN
        PERFORM _workflow_invalid('duration_seconds', 'must not be negative');
    END IF;
    SELECT * INTO cur FROM workflow_state w WHERE w.workflow_id = p_workflow_id FOR SHARE;
    IF NOT FOUND THEN
        PERFORM _workflow_not_found(p_workflow_id);
    END IF;
    INSERT INTO workflow_checkpoints (workflow_id, step, agent, data, duration_seconds, status, workflow_version)
    VALUES (p_workflow_id, p_step, p_agent, coalesce(p_data, cur.state_data), p_duration_seconds, p_status,
            cur.version)
    RETURNING id INTO new_id;
    RETURN new_id;
END;
$$;


-- Replace the state with a checkpoint's data (and step) as a new version; honours expected_version
-- when given, like update_workflow_state.
CREATE FUNCTION restore_workflow_checkpoint(
    p_workflow_id text,
    p_checkpoint_id bigint,
    p_expected_version bigint DEFAULT NULL
) RETURNS TABLE (restored boolean, version bigint, state_data jsonb, message text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    cp workflow_checkpoints;
    cur workflow_state;
BEGIN
    SELECT * INTO cur FROM workflow_state w WHERE w.workflow_id = p_workflow_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM _workflow_not_found(p_workflow_id);
    END IF;
    SELECT * INTO cp FROM workflow_checkpoints c WHERE c.id = p_checkpoint_id AND c.workflow_id = p_workflow_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'DW003', COLUMN = 'checkpoint_id',
            MESSAGE = format('unknown checkpoint_id %s for workflow %s', p_checkpoint_id, p_workflow_id);
    END IF;
    IF p_expected_version IS NOT NULL AND p_expected_version <> cur.version THEN
        RETURN QUERY SELECT false, cur.version, cur.state_data,
            format('version conflict: expected %s, current is %s', p_expected_version, cur.version);
        RETURN;
    END IF;
    UPDATE workflow_state w
    SET state_data = cp.data, current_step = cp.step, version = w.version + 1, updated_at = clock_timestamp()
    WHERE w.workflow_id = p_workflow_id
    RETURNING * INTO cur;
    RETURN QUERY SELECT true, cur.version, cur.state_data,
        format('restored checkpoint %s (step %s) as version %s', cp.id, cp.step, cur.version);
END;
$$;


CREATE FUNCTION transition_workflow_status(
    p_workflow_id text,
    p_new_status text,
    p_error_message text DEFAULT NULL,
    p_expected_version bigint DEFAULT NULL
) RETURNS SETOF workflow_state
LANGUAGE plpgsql AS $$
DECLARE
    cur workflow_state;
BEGIN
    IF p_new_status IS NULL OR p_new_status NOT IN
        ('pending', 'running', 'paused', 'waiting_approval', 'completed', 'failed', 'cancelled') THEN
        PERFORM _workflow_invalid('new_status', format('unknown status %L', p_new_status));
    END IF;
    SELECT * INTO cur FROM workflow_state w WHERE w.workflow_id = p_workflow_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM _workflow_not_found(p_workflow_id);
    END IF;
    IF p_expected_version IS NOT NULL AND p_expected_version <> cur.version THEN
        RAISE EXCEPTION USING ERRCODE = 'DW005', COLUMN = 'expected_version',
            MESSAGE = format('version conflict: expected %s, current is %s', p_expected_version, cur.version);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM workflow_status_transitions t
                   WHERE t.from_status = cur.status AND t.to_status = p_new_status) THEN
        RAISE EXCEPTION USING ERRCODE = 'DW002', COLUMN = 'new_status',
            MESSAGE = format('invalid status transition for %s: %s -> %s', p_workflow_id, cur.status, p_new_status);
    END IF;
    RETURN QUERY
    UPDATE workflow_state w
    SET status = p_new_status,
        version = w.version + 1,
        updated_at = clock_timestamp(),
        completed_at = CASE WHEN p_new_status IN ('completed', 'failed', 'cancelled') THEN clock_timestamp() END,
        error_message = CASE WHEN p_new_status = 'failed' THEN coalesce(p_error_message, w.error_message)
                             ELSE p_error_message END
    WHERE w.workflow_id = p_workflow_id
    RETURNING *;
END;
$$;


-- Delete finished (completed, failed, cancelled) workflows older than `retention`; returns how many.
CREATE FUNCTION cleanup_old_workflows(retention interval) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    IF retention IS NULL OR retention < interval '0' THEN
        PERFORM _workflow_invalid('retention', 'must be a non-negative interval');
    END IF;
    DELETE FROM workflow_state w
    WHERE w.status IN ('completed', 'failed', 'cancelled')
      AND w.completed_at < clock_timestamp() - retention;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$$;
