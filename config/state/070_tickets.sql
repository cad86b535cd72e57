-- Tickets: a piece of work a person files, moved through phases by one durable run of the
-- `ticket` workflow (runs.id in run_id). `version` is the optimistic lock: every change names
-- the version it read, and a stale one is refused with SQLSTATE 'DT409' naming the current version
-- (the API answers 409). Which phase transitions are allowed is declared in config/phases/*.yaml
-- and checked by agent_orchestrator/tickets before it calls transition_ticket; every transition is
-- a phase_history row. Every procedure bumps `version` when it changes the row, so a version
-- always identifies one state of the ticket.
--
-- Errors: 'DT001' invalid argument (COLUMN = the argument), 'DT404' unknown ticket
-- (DETAIL 'ticket_id=<id>'), 'DT409' stale version (COLUMN 'expected_version',
-- DETAIL 'ticket_id=<id> expected_version=<n> current_version=<m>').
-- agent_orchestrator/tickets/errors.py maps them to typed errors.

CREATE TABLE tickets (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    title         text NOT NULL CHECK (btrim(title) <> '' AND length(title) <= 300),
    description   text NOT NULL DEFAULT '' CHECK (length(description) <= 20000),
    repo_path     text NOT NULL CHECK (btrim(repo_path) <> '' AND length(repo_path) <= 4096),
    base_branch   text NOT NULL DEFAULT 'main' CHECK (btrim(base_branch) <> '' AND length(base_branch) <= 255),
    head_branch   text CHECK (head_branch IS NULL OR (btrim(head_branch) <> '' AND length(head_branch) <= 255)),
    priority      text NOT NULL DEFAULT 'medium' CHECK (priority IN ('critical', 'high', 'medium', 'low')),
    labels        text[] NOT NULL DEFAULT '{}' CHECK (cardinality(labels) <= 20),
    created_by    text NOT NULL CHECK (btrim(created_by) <> '' AND length(created_by) <= 100),
    phase         text NOT NULL CHECK (btrim(phase) <> '' AND length(phase) <= 50),
    status        text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'blocked', 'done', 'cancelled')),
    phase_file    text NOT NULL DEFAULT 'default',   -- which config/phases/<name>.yaml drives it
    context       jsonb NOT NULL DEFAULT '{}'::jsonb,  -- what earlier phases' tasks learned, by task key
    run_id        uuid REFERENCES runs (id) ON DELETE SET NULL,
    version       bigint NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    closed_at     timestamptz                           -- set while status is done or cancelled
);
CREATE INDEX tickets_status_idx ON tickets (status, priority, created_at DESC);
CREATE INDEX tickets_phase_idx ON tickets (phase, created_at DESC);
CREATE INDEX tickets_run_idx ON tickets (run_id);
CREATE INDEX tickets_labels_idx ON tickets USING gin (labels);
CREATE INDEX tickets_created_idx ON tickets (created_at DESC, id);

CREATE TABLE phase_history (
    id          bigserial PRIMARY KEY,
    ticket_id   uuid NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    from_phase  text,                  -- NULL for the ticket's first phase
    to_phase    text NOT NULL,
    actor       text NOT NULL,
    reason      text NOT NULL DEFAULT '',
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX phase_history_ticket_idx ON phase_history (ticket_id, id);


-- Argument checks: one place that says which argument is wrong and why.
CREATE FUNCTION _ticket_invalid(p_argument text, p_message text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'DT001', COLUMN = p_argument,
        MESSAGE = 'invalid ' || p_argument || ': ' || p_message;
END;
$$;

-- A text argument: NULL and blank refused when required, at most p_max characters.
CREATE FUNCTION _ticket_check_text(p_argument text, p_value text, p_max integer, p_required boolean DEFAULT true)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_value IS NULL THEN
        PERFORM _ticket_invalid(p_argument, 'must not be null');
    END IF;
    IF p_required AND btrim(p_value) = '' THEN
        PERFORM _ticket_invalid(p_argument, 'must not be blank');
    END IF;
    IF length(p_value) > p_max THEN
        PERFORM _ticket_invalid(p_argument, format('at most %s characters (got %s)', p_max, length(p_value)));
    END IF;
END;
$$;

-- Branch names go to git as refs: a leading '-' would read as an option.
CREATE FUNCTION _ticket_check_branch(p_argument text, p_value text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM _ticket_check_text(p_argument, p_value, 255);
    IF p_value ~ '^-' OR p_value ~ '[[:space:][:cntrl:]]' THEN
        PERFORM _ticket_invalid(p_argument, format('%L is not a valid branch name', p_value));
    END IF;
END;
$$;

CREATE FUNCTION _ticket_check_priority(p_value text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_value IS NULL OR p_value NOT IN ('critical', 'high', 'medium', 'low') THEN
        PERFORM _ticket_invalid('priority', format('%L is not one of critical, high, medium, low', p_value));
    END IF;
END;
$$;

CREATE FUNCTION _ticket_check_labels(p_labels text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_label text;
BEGIN
    IF p_labels IS NULL THEN
        PERFORM _ticket_invalid('labels', 'must not be null');
    END IF;
    IF cardinality(p_labels) > 20 THEN
        PERFORM _ticket_invalid('labels', format('at most 20 labels (got %s)', cardinality(p_labels)));
    END IF;
    FOREACH v_label IN ARRAY p_labels LOOP
        IF v_label IS NULL OR btrim(v_label) = '' OR length(v_label) > 50 THEN
            PERFORM _ticket_invalid('labels', format('each label has 1 to 50 characters (got %L)', v_label));
        END IF;
    END LOOP;
END;
$$;

CREATE FUNCTION _ticket_check_version(p_value bigint, p_required boolean DEFAULT true) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_value IS NULL AND p_required THEN
        PERFORM _ticket_invalid('expected_version', 'must not be null');
    END IF;
    IF p_value < 1 THEN
        PERFORM _ticket_invalid('expected_version', format('must be at least 1 (got %s)', p_value));
    END IF;
END;
$$;

-- The ticket row, locked for the rest of the transaction (so two changes serialize), after the
-- version check: NULL expected version means "whatever is current".
CREATE FUNCTION _ticket_lock(p_id uuid, p_expected_version bigint) RETURNS tickets
LANGUAGE plpgsql AS $$
DECLARE
    v_ticket tickets;
BEGIN
    IF p_id IS NULL THEN
        PERFORM _ticket_invalid('id', 'must not be null');
    END IF;
    SELECT * INTO v_ticket FROM tickets WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'DT404', COLUMN = 'id',
            MESSAGE = format('no ticket %s', p_id), DETAIL = format('ticket_id=%s', p_id);
    END IF;
    IF p_expected_version IS NOT NULL AND p_expected_version <> v_ticket.version THEN
        RAISE EXCEPTION USING ERRCODE = 'DT409', COLUMN = 'expected_version',
            MESSAGE = format('ticket %s was changed meanwhile: expected version %s, current version is %s',
                             p_id, p_expected_version, v_ticket.version),
            DETAIL = format('ticket_id=%s expected_version=%s current_version=%s',
                            p_id, p_expected_version, v_ticket.version);
    END IF;
    RETURN v_ticket;
END;
$$;


-- A new ticket in its first phase (status open), with the history row from NULL to that phase.
CREATE FUNCTION create_ticket(
    p_title text, p_repo_path text, p_created_by text, p_phase text,
    p_description text DEFAULT '', p_base_branch text DEFAULT 'main', p_head_branch text DEFAULT NULL,
    p_priority text DEFAULT 'medium', p_labels text[] DEFAULT '{}', p_phase_file text DEFAULT 'default',
    p_reason text DEFAULT 'created', p_id uuid DEFAULT NULL
) RETURNS SETOF tickets LANGUAGE plpgsql AS $$
DECLARE
    v_ticket tickets;
BEGIN
    PERFORM _ticket_check_text('title', p_title, 300);
    PERFORM _ticket_check_text('description', p_description, 20000, false);
    PERFORM _ticket_check_text('repo_path', p_repo_path, 4096);
    PERFORM _ticket_check_branch('base_branch', p_base_branch);
    IF p_head_branch IS NOT NULL THEN
        PERFORM _ticket_check_branch('head_branch', p_head_branch);
    END IF;
    PERFORM _ticket_check_priority(p_priority);
    PERFORM _ticket_check_labels(p_labels);
    PERFORM _ticket_check_text('created_by', p_created_by, 100);
    PERFORM _ticket_check_text('phase', p_phase, 50);
    PERFORM _ticket_check_text('reason', p_reason, 2000, false);
    IF p_phase_file IS NULL OR p_phase_file !~ '^[a-z0-9][a-z0-9_-]{0,62}$' THEN
        PERFORM _ticket_invalid('phase_file', format('%L is not a phase file name ([a-z0-9][a-z0-9_-]*)', p_phase_file));
    END IF;

    INSERT INTO tickets (id, title, description, repo_path, base_branch, head_branch, priority, labels,
                         created_by, phase, status, phase_file)
    VALUES (coalesce(p_id, gen_random_uuid()), p_title, p_description, p_repo_path, p_base_branch,
            p_head_branch, p_priority, p_labels, p_created_by, p_phase, 'open', p_phase_file)
    RETURNING * INTO v_ticket;
    INSERT INTO phase_history (ticket_id, from_phase, to_phase, actor, reason)
    VALUES (v_ticket.id, NULL, p_phase, p_created_by, p_reason);
    RETURN NEXT v_ticket;
END;
$$;

-- Change what a person may edit: p_changes is an object with any of title, description, priority,
-- labels, head_branch (null clears head_branch). Unknown keys are refused, not ignored, so a typo
-- never looks like a successful edit.
CREATE FUNCTION update_ticket(p_id uuid, p_expected_version bigint, p_changes jsonb)
RETURNS SETOF tickets LANGUAGE plpgsql AS $$
DECLARE
    v_key text;
    v_type text;
    v_wanted text;
    v_labels text[];
BEGIN
    PERFORM _ticket_check_version(p_expected_version);
    IF p_changes IS NULL OR jsonb_typeof(p_changes) <> 'object' THEN
        PERFORM _ticket_invalid('changes', 'must be a JSON object');
    END IF;
    IF p_changes = '{}'::jsonb THEN
        PERFORM _ticket_invalid('changes', 'nothing to change: give title, description, priority, labels or head_branch');
    END IF;
    FOR v_key IN SELECT jsonb_object_keys(p_changes) LOOP
        IF v_key NOT IN ('title', 'description', 'priority', 'labels', 'head_branch') THEN
            PERFORM _ticket_invalid('changes', format(
                'unknown field %L (allowed: title, description, priority, labels, head_branch)', v_key));
        END IF;
        v_type := jsonb_typeof(p_changes -> v_key);
        v_wanted := CASE v_key WHEN 'labels' THEN 'array' WHEN 'head_branch' THEN 'string or null'
                               ELSE 'string' END;
        IF NOT (v_type = v_wanted OR (v_key = 'head_branch' AND v_type IN ('string', 'null'))) THEN
            PERFORM _ticket_invalid(v_key, format('must be a JSON %s, not %s', v_wanted, v_type));
        END IF;
    END LOOP;
    IF p_changes ? 'title' THEN
        PERFORM _ticket_check_text('title', p_changes ->> 'title', 300);
    END IF;
    IF p_changes ? 'description' THEN
        PERFORM _ticket_check_text('description', p_changes ->> 'description', 20000, false);
    END IF;
    IF p_changes ? 'priority' THEN
        PERFORM _ticket_check_priority(p_changes ->> 'priority');
    END IF;
    IF p_changes ? 'labels' THEN
        IF EXISTS (SELECT 1 FROM jsonb_array_elements(p_changes -> 'labels') e WHERE jsonb_typeof(e) <> 'string') THEN
            PERFORM _ticket_invalid('labels', 'must be a list of strings');
        END IF;
        v_labels := ARRAY(SELECT jsonb_array_elements_text(p_changes -> 'labels'));
        PERFORM _ticket_check_labels(v_labels);
    END IF;
    IF jsonb_typeof(p_changes -> 'head_branch') = 'string' THEN
        PERFORM _ticket_check_branch('head_branch', p_changes ->> 'head_branch');
    END IF;

    PERFORM _ticket_lock(p_id, p_expected_version);
    RETURN QUERY
    UPDATE tickets t SET
        title = CASE WHEN p_changes ? 'title' THEN p_changes ->> 'title' ELSE t.title END,
        description = CASE WHEN p_changes ? 'description' THEN p_changes ->> 'description' ELSE t.description END,
        priority = CASE WHEN p_changes ? 'priority' THEN p_changes ->> 'priority' ELSE t.priority END,
        labels = CASE WHEN p_changes ? 'labels' THEN v_labels ELSE t.labels END,
        head_branch = CASE WHEN p_changes ? 'head_branch' THEN p_changes ->> 'head_branch' ELSE t.head_branch END,
        version = t.version + 1,
        updated_at = now()
    WHERE t.id = p_id
    RETURNING t.*;
END;
$$;

-- Move the ticket to another phase. Whether the move is allowed is the phase file's business
-- (checked by the caller first); this serializes moves (row lock + version) and records them.
CREATE FUNCTION transition_ticket(
    p_id uuid, p_expected_version bigint, p_to_phase text, p_to_status text, p_actor text, p_reason text DEFAULT ''
) RETURNS SETOF tickets LANGUAGE plpgsql AS $$
DECLARE
    v_ticket tickets;
BEGIN
    PERFORM _ticket_check_version(p_expected_version, false);
    PERFORM _ticket_check_text('to_phase', p_to_phase, 50);
    IF p_to_status IS NULL OR p_to_status NOT IN ('open', 'blocked', 'done', 'cancelled') THEN
        PERFORM _ticket_invalid('to_status', format('%L is not one of open, blocked, done, cancelled', p_to_status));
    END IF;
    PERFORM _ticket_check_text('actor', p_actor, 100);
    PERFORM _ticket_check_text('reason', p_reason, 2000, false);

    v_ticket := _ticket_lock(p_id, p_expected_version);
    INSERT INTO phase_history (ticket_id, from_phase, to_phase, actor, reason)
    VALUES (p_id, v_ticket.phase, p_to_phase, p_actor, p_reason);
    RETURN QUERY
    UPDATE tickets t SET
        phase = p_to_phase,
        status = p_to_status,
        closed_at = CASE WHEN p_to_status IN ('done', 'cancelled') THEN now() END,
        version = t.version + 1,
        updated_at = now()
    WHERE t.id = p_id
    RETURNING t.*;
END;
$$;

-- Record what a task (or phase) learned: context[p_key] = p_value. Later phases read it through
-- `{context.<key>...}` placeholders. Keys cannot hold '.', the placeholder path separator.
CREATE FUNCTION merge_ticket_context(p_id uuid, p_key text, p_value jsonb, p_expected_version bigint DEFAULT NULL)
RETURNS SETOF tickets LANGUAGE plpgsql AS $$
BEGIN
    PERFORM _ticket_check_version(p_expected_version, false);
    IF p_key IS NULL OR p_key !~ '^[A-Za-z_][A-Za-z0-9_-]{0,99}$' THEN
        PERFORM _ticket_invalid('key', format('%L is not a context key ([A-Za-z_][A-Za-z0-9_-]*, at most 100)', p_key));
    END IF;
    IF p_value IS NULL THEN
        PERFORM _ticket_invalid('value', 'must not be SQL NULL (JSON null is fine)');
    END IF;
    -- A bound, so one runaway result cannot bloat every later read of the ticket.
    IF octet_length(p_value::text) > 8388608 THEN
        PERFORM _ticket_invalid('value', format('at most 8 MiB of JSON (got %s bytes)', octet_length(p_value::text)));
    END IF;

    PERFORM _ticket_lock(p_id, p_expected_version);
    RETURN QUERY
    UPDATE tickets t SET
        context = t.context || jsonb_build_object(p_key, p_value),
        version = t.version + 1,
        updated_at = now()
    WHERE t.id = p_id
    RETURNING t.*;
END;
$$;

-- Attach the ticket's workflow run (NULL detaches it).
CREATE FUNCTION set_ticket_run(p_id uuid, p_run_id uuid)
RETURNS SETOF tickets LANGUAGE plpgsql AS $$
BEGIN
    IF p_run_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM runs WHERE id = p_run_id) THEN
        PERFORM _ticket_invalid('run_id', format('no run %s', p_run_id));
    END IF;
    PERFORM _ticket_lock(p_id, NULL);
    RETURN QUERY
    UPDATE tickets t SET run_id = p_run_id, version = t.version + 1, updated_at = now()
    WHERE t.id = p_id
    RETURNING t.*;
END;
$$;
