-- Tasks: the units of a ticket's phase that agents pick up. A task needs a capability, carries a
-- request (request_type + payload) for the agent the dispatcher picks through the registry, and
-- depends on other tasks of the same ticket (a DAG, checked when the tasks are created).
--
-- Lifecycle: pending (dependencies not done) -> ready -> assigned (a dispatcher claimed it and picks
-- an agent) -> running (the agent took it; it renews the lease) -> succeeded | failed | timed_out |
-- cancelled; blocked when a dependency failed for good. A retryable failure goes back to ready with
-- not_before = now() + backoff. `attempt` counts claims and is the fencing token: every call about
-- an assigned task passes it, and a late answer from an earlier attempt changes nothing. `failures`
-- counts failed, lost and timed-out attempts against max_attempts (a dispatcher handing a claim back
-- because no agent is free is not a failure); retry_task starts a fresh budget.
--
-- Final statuses: succeeded, failed, timed_out, cancelled and blocked: none of them changes again
-- unless a person retries (retry_task). Python callers (agent_orchestrator/tasks) compute backoff
-- delays with full jitter; expire_task_leases takes the same policy as arguments.
--
-- Concurrency: anything that reads or changes the dependency state of a ticket's tasks (create,
-- complete, fail, expire, cancel, retry) first takes a transaction-scoped advisory lock on the
-- ticket (tasks_lock_ticket), then row locks. Without it two dependencies completing at once could
-- each see the other unfinished and leave their common dependant pending forever. Claims take no
-- advisory lock and never wait (SKIP LOCKED), so they cannot close a lock cycle.
--
-- NOTIFY: channel 'devtools_tasks', payload = the capability of a task that became ready (created,
-- promoted, released, retried, expired back to ready): dispatchers listening for it wake up.
-- Channel 'devtools_task_updates', payload = the ticket id, whenever a ticket's tasks changed
-- status in a way its workflow waits for (a task finished, was cancelled, blocked or retried).
--
-- Errors: 'DK001' invalid argument (COLUMN = the argument); 'DK002' dependency problem, DETAIL names
-- it and CONSTRAINT says which: 'unknown_dependency' (DETAIL = the reference), 'dependency_cycle'
-- (DETAIL = the keys on or behind the cycle), 'dependency_unfinished' (retry_task; DETAIL = the id of
-- the dependency that still failed); 'DK404' unknown task or ticket. Calls fenced by attempt (assign,
-- release, start, heartbeat, complete, fail) treat an unknown task id like a stale attempt: they
-- answer "not applied" instead of raising, because a late answer about a deleted ticket is normal.

CREATE TABLE tasks (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    ticket_id        uuid NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    phase            text NOT NULL,
    key              text NOT NULL,          -- the template's name within the phase: idempotent creation
    title            text NOT NULL DEFAULT '',
    capability       text NOT NULL,
    request_type     text NOT NULL,
    payload          jsonb NOT NULL DEFAULT '{}'::jsonb,
    priority         integer NOT NULL DEFAULT 0 CHECK (priority BETWEEN -1000 AND 1000),  -- higher first
    depends_on       uuid[] NOT NULL DEFAULT '{}',
    locks            text[] NOT NULL DEFAULT '{}',
    -- payload field -> '<task key>.<result field>' of an earlier task of the phase, filled in by the
    -- dispatcher when it sends the task (a DECOMPOSE_TASK plan's bindings)
    bindings         jsonb NOT NULL DEFAULT '{}'::jsonb,     -- resource locks the dispatcher holds while it runs
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'ready', 'assigned', 'running', 'succeeded', 'failed',
                                       'timed_out', 'cancelled', 'blocked')),
    attempt          integer NOT NULL DEFAULT 0,       -- claims so far; the fencing token
    failures         integer NOT NULL DEFAULT 0,       -- failed/lost/timed-out attempts since (re)start
    max_attempts     integer NOT NULL DEFAULT 3 CHECK (max_attempts BETWEEN 1 AND 20),
    timeout_seconds  double precision NOT NULL DEFAULT 600 CHECK (timeout_seconds BETWEEN 1 AND 86400),
    not_before       timestamptz NOT NULL DEFAULT now(),
    claimed_by       text,                   -- the dispatcher of the latest claim
    assigned_agent   text,                   -- the agent of the latest attempt (kept after it ends)
    lease_expires_at timestamptz,
    deadline_at      timestamptz,
    cancel_requested boolean NOT NULL DEFAULT false,  -- seen by the attempt's heartbeats
    result           jsonb,
    error            text,
    error_class      text CHECK (error_class IN ('retryable', 'permanent')),
    error_kind       text CHECK (error_kind ~ '^[a-z][a-z_]{0,39}$'),  -- e.g. timeout, agent_gone
    blocked_reason   text,
    wait_reason      text,                   -- why a released task waits (no agent free, ...)
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    ready_at         timestamptz,              -- when it last became claimable (dispatch latency)
    UNIQUE (ticket_id, phase, key)
);
CREATE INDEX tasks_ready_idx ON tasks (priority DESC, created_at, id) WHERE status = 'ready';
CREATE INDEX tasks_lease_idx ON tasks (lease_expires_at) WHERE status IN ('assigned', 'running');
CREATE INDEX tasks_deadline_idx ON tasks (deadline_at) WHERE status = 'running';
CREATE INDEX tasks_ticket_idx ON tasks (ticket_id, phase, status);
-- Promotion looks for a ticket's pending tasks after every completion: only those, never the rest.
CREATE INDEX tasks_pending_idx ON tasks (ticket_id) WHERE status = 'pending';
CREATE INDEX tasks_agent_idx ON tasks (assigned_agent) WHERE status IN ('assigned', 'running');

-- ---------------------------------------------------------------------------------------------
-- Internal helpers (called by the procedures below, not by Python).

-- `ready_at`: when the task last became claimable (ready, and due), whichever procedure made it so;
-- the dispatcher measures dispatch latency (ready until an agent has it) from it.
CREATE FUNCTION tasks_stamp_ready() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'ready' AND (TG_OP = 'INSERT' OR OLD.status IS DISTINCT FROM 'ready'
                                 OR OLD.not_before IS DISTINCT FROM NEW.not_before) THEN
        NEW.ready_at := greatest(now(), NEW.not_before);
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER tasks_stamp_ready BEFORE INSERT OR UPDATE OF status, not_before ON tasks
    FOR EACH ROW EXECUTE FUNCTION tasks_stamp_ready();

CREATE FUNCTION tasks_invalid(p_argument text, p_message text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'DK001', MESSAGE = p_message, COLUMN = p_argument;
END;
$$;

-- Serialize dependency-state changes of one ticket (see "Concurrency" above). A hash collision
-- with another lock user only serializes more than needed; it cannot break correctness.
CREATE FUNCTION tasks_lock_ticket(p_ticket_id uuid) RETURNS void LANGUAGE sql AS $$
    SELECT pg_advisory_xact_lock(hashtextextended('devtools_tasks:' || p_ticket_id::text, 0));
$$;

-- Why a dependant of p_dep is blocked. A blocked dependency passes its own reason on, so every task
-- downstream of a failure names the task that actually failed.
CREATE FUNCTION tasks_block_reason(p_dep tasks) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_dep.status = 'blocked' THEN p_dep.blocked_reason
                ELSE format('dependency %s [%s] %s%s', p_dep.key, p_dep.id, replace(p_dep.status, '_', ' '),
                            coalesce(': ' || p_dep.error, ''))
           END;
$$;

-- Block every pending task of the ticket with a dependency that ended without success, transitively
-- (one UPDATE per level: a statement does not see the rows it blocks itself). Returns how many.
CREATE FUNCTION tasks_settle_blocked(p_ticket_id uuid) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_level integer;
    v_total integer := 0;
BEGIN
    LOOP
        UPDATE tasks t SET status = 'blocked', updated_at = now(), finished_at = now(),
               blocked_reason = (SELECT tasks_block_reason(d) FROM tasks d
                                 WHERE d.id = ANY (t.depends_on)
                                   AND d.status IN ('failed', 'timed_out', 'cancelled', 'blocked')
                                 ORDER BY d.created_at, d.id LIMIT 1)
        WHERE t.ticket_id = p_ticket_id AND t.status = 'pending'
          AND EXISTS (SELECT 1 FROM tasks d WHERE d.id = ANY (t.depends_on)
                        AND d.status IN ('failed', 'timed_out', 'cancelled', 'blocked'));
        GET DIAGNOSTICS v_level = ROW_COUNT;
        EXIT WHEN v_level = 0;
        v_total := v_total + v_level;
    END LOOP;
    RETURN v_total;
END;
$$;

-- Make ready every pending task of the ticket whose dependencies all succeeded, and wake the
-- dispatchers (one NOTIFY per capability: PostgreSQL folds identical ones in a transaction).
CREATE FUNCTION tasks_promote_ready(p_ticket_id uuid) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_capability text;
    v_count integer := 0;
BEGIN
    FOR v_capability IN
        UPDATE tasks t SET status = 'ready', not_before = now(), updated_at = now()
        WHERE t.ticket_id = p_ticket_id AND t.status = 'pending'
          AND NOT EXISTS (SELECT 1 FROM tasks d WHERE d.id = ANY (t.depends_on) AND d.status <> 'succeeded')
        RETURNING t.capability
    LOOP
        v_count := v_count + 1;
        PERFORM pg_notify('devtools_tasks', v_capability);
    END LOOP;
    RETURN v_count;
END;
$$;

-- A number field of a task spec, checked (DK001 naming the field) or its default when absent.
CREATE FUNCTION tasks_spec_number(p_spec jsonb, p_field text, p_default numeric, p_min numeric,
                                  p_max numeric, p_integer boolean) RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE
    v_value numeric;
BEGIN
    IF p_spec->p_field IS NULL OR p_spec->p_field = 'null'::jsonb THEN
        RETURN p_default;
    END IF;
    IF jsonb_typeof(p_spec->p_field) <> 'number' THEN
        PERFORM tasks_invalid(p_field, format('%s must be a number, got %s', p_field, p_spec->p_field));
    END IF;
    v_value := (p_spec->>p_field)::numeric;
    IF v_value < p_min OR v_value > p_max OR (p_integer AND v_value <> trunc(v_value)) THEN
        PERFORM tasks_invalid(p_field, format('%s must be %s between %s and %s, got %s', p_field,
            CASE WHEN p_integer THEN 'an integer' ELSE 'a number' END, p_min, p_max, v_value));
    END IF;
    RETURN v_value;
END;
$$;

-- A text field of a task spec, checked (DK001 naming the field).
CREATE FUNCTION tasks_spec_text(p_spec jsonb, p_field text, p_required boolean, p_max_length integer)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_value text := p_spec->>p_field;
BEGIN
    IF p_spec->p_field IS NOT NULL AND jsonb_typeof(p_spec->p_field) NOT IN ('string', 'null') THEN
        PERFORM tasks_invalid(p_field, format('%s must be a string', p_field));
    END IF;
    IF p_required AND (v_value IS NULL OR btrim(v_value) = '') THEN
        PERFORM tasks_invalid(p_field, format('%s is required', p_field));
    END IF;
    IF length(v_value) > p_max_length THEN
        PERFORM tasks_invalid(p_field, format('%s is longer than %s characters', p_field, p_max_length));
    END IF;
    RETURN coalesce(v_value, '');
END;
$$;

CREATE FUNCTION tasks_notify_ticket(p_ticket_id uuid) RETURNS void LANGUAGE sql AS $$
    SELECT pg_notify('devtools_task_updates', p_ticket_id::text);
$$;

-- ---------------------------------------------------------------------------------------------
-- Creation.

-- Create a phase's tasks, exactly once. p_specs is a JSON array of
--   {key, title, capability, request_type, payload, priority, depends_on, timeout_seconds, max_attempts,
--    locks}
-- where depends_on lists keys of this batch or ids of existing tasks of the same ticket, and locks
-- names resources (acquire_resource_lock ids) the dispatcher must hold while the task runs; the
-- store only keeps them.
-- Idempotent: a spec whose (ticket, phase, key) exists is not inserted again and its row is returned
-- unchanged, so a ticket run resuming after a crash gets the same ids. Returns the batch's rows in
-- spec order. A new task is ready when every dependency succeeded, blocked when one ended without
-- success, else pending. Errors: DK404 unknown ticket; DK001 bad field (COLUMN names it); DK002
-- unknown dependency (DETAIL = the reference) or a cycle (DETAIL = the keys on or behind it; the
-- Python caller names the cycle itself before calling, this is the database's own guarantee).
CREATE FUNCTION create_tasks(p_ticket_id uuid, p_phase text, p_specs jsonb)
RETURNS SETOF tasks LANGUAGE plpgsql AS $$
DECLARE
    v_spec jsonb;
    v_ord bigint;
    v_key text;
    v_keys text[] := '{}';
    v_ids uuid[] := '{}';     -- parallel to v_keys: the existing or new id of each spec
    v_new uuid[] := '{}';
    v_id uuid;
    v_dep text;
    v_dep_id uuid;
    v_deps uuid[];
    v_pos integer;
    v_remaining uuid[];
    v_free uuid[];
BEGIN
    IF p_phase IS NULL OR btrim(p_phase) = '' OR length(p_phase) > 100 THEN
        PERFORM tasks_invalid('phase', 'phase must be 1 to 100 characters');
    END IF;
    IF p_specs IS NULL OR jsonb_typeof(p_specs) <> 'array' OR jsonb_array_length(p_specs) > 500 THEN
        PERFORM tasks_invalid('specs', 'specs must be a JSON array of at most 500 task specs');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM tickets WHERE id = p_ticket_id) THEN
        RAISE EXCEPTION USING ERRCODE = 'DK404', MESSAGE = format('unknown ticket %s', p_ticket_id);
    END IF;
    -- Concurrent creations of the same phase serialize here; the second finds the first's rows.
    PERFORM tasks_lock_ticket(p_ticket_id);

    -- Pass 1: every key gets its id (the existing row's, or a fresh one) so that dependencies
    -- between tasks of the batch resolve whatever their order.
    FOR v_spec IN SELECT value FROM jsonb_array_elements(p_specs) LOOP
        IF jsonb_typeof(v_spec) <> 'object' THEN
            PERFORM tasks_invalid('specs', 'every task spec must be a JSON object');
        END IF;
        v_key := v_spec->>'key';
        IF v_key IS NULL OR v_key !~ '^[a-z0-9][a-z0-9_.-]{0,63}$' THEN
            PERFORM tasks_invalid('key', format('task key %L must match ^[a-z0-9][a-z0-9_.-]{0,63}$', v_key));
        END IF;
        IF v_key = ANY (v_keys) THEN
            PERFORM tasks_invalid('key', format('task key %L appears twice in the batch', v_key));
        END IF;
        SELECT id INTO v_id FROM tasks WHERE ticket_id = p_ticket_id AND phase = p_phase AND key = v_key;
        IF v_id IS NULL THEN
            v_id := gen_random_uuid();
            v_new := v_new || v_id;
        END IF;
        v_keys := v_keys || v_key;
        v_ids := v_ids || v_id;
    END LOOP;

    -- Pass 2: insert the new ones, pending for now.
    FOR v_spec, v_ord IN SELECT value, ordinality FROM jsonb_array_elements(p_specs) WITH ORDINALITY LOOP
        v_id := v_ids[v_ord];
        CONTINUE WHEN NOT v_id = ANY (v_new);
        v_key := v_keys[v_ord];
        IF v_spec ? 'depends_on' AND jsonb_typeof(v_spec->'depends_on') NOT IN ('array', 'null') THEN
            PERFORM tasks_invalid('depends_on', 'depends_on must be an array of task keys or ids');
        END IF;
        IF jsonb_typeof(v_spec->'depends_on') = 'array' AND jsonb_array_length(v_spec->'depends_on') > 100 THEN
            PERFORM tasks_invalid('depends_on', 'a task depends on at most 100 tasks');
        END IF;
        IF v_spec ? 'payload' AND jsonb_typeof(v_spec->'payload') NOT IN ('object', 'null') THEN
            PERFORM tasks_invalid('payload', 'payload must be a JSON object');
        END IF;
        IF v_spec ? 'locks' AND jsonb_typeof(v_spec->'locks') <> 'null' AND (
               jsonb_typeof(v_spec->'locks') <> 'array' OR jsonb_array_length(v_spec->'locks') > 5
               OR EXISTS (SELECT 1 FROM jsonb_array_elements(v_spec->'locks') AS l(v)
                          WHERE jsonb_typeof(l.v) <> 'string' OR length(l.v #>> '{}') NOT BETWEEN 1 AND 300))
        THEN
            PERFORM tasks_invalid('locks', 'locks must be an array of at most 5 names of 1 to 300 characters');
        END IF;
        IF length(coalesce(v_spec->'payload', '{}'::jsonb)::text) > 262144 THEN
            PERFORM tasks_invalid('payload', 'payload is larger than 256 KiB');
        END IF;
        IF v_spec ? 'bindings' AND jsonb_typeof(v_spec->'bindings') NOT IN ('object', 'null') THEN
            PERFORM tasks_invalid('bindings', 'bindings must be a JSON object');
        END IF;
        v_deps := '{}';
        FOR v_dep IN
            SELECT jsonb_array_elements_text(CASE WHEN jsonb_typeof(v_spec->'depends_on') = 'array'
                                                  THEN v_spec->'depends_on' ELSE '[]'::jsonb END)
        LOOP
            v_pos := array_position(v_keys, v_dep);
            v_dep_id := NULL;
            IF v_pos IS NOT NULL THEN
                v_dep_id := v_ids[v_pos];
            ELSIF v_dep ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
                -- Only a task of the same ticket: a DAG never reaches into another ticket.
                SELECT id INTO v_dep_id FROM tasks WHERE id = v_dep::uuid AND ticket_id = p_ticket_id;
            END IF;
            IF v_dep_id IS NULL THEN
                RAISE EXCEPTION USING ERRCODE = 'DK002', DETAIL = v_dep, COLUMN = 'depends_on',
                    CONSTRAINT = 'unknown_dependency',
                    MESSAGE = format('task %L depends on unknown task %L (neither a key of this batch '
                                     'nor a task of ticket %s)', v_key, v_dep, p_ticket_id);
            END IF;
            IF NOT v_dep_id = ANY (v_deps) THEN
                v_deps := v_deps || v_dep_id;
            END IF;
        END LOOP;
        INSERT INTO tasks (id, ticket_id, phase, key, title, capability, request_type, payload, priority,
                           depends_on, locks, max_attempts, timeout_seconds, created_at, bindings)
        VALUES (v_id, p_ticket_id, p_phase, v_key,
                tasks_spec_text(v_spec, 'title', false, 300),
                tasks_spec_text(v_spec, 'capability', true, 100),
                tasks_spec_text(v_spec, 'request_type', true, 100),
                coalesce(nullif(v_spec->'payload', 'null'::jsonb), '{}'::jsonb),
                tasks_spec_number(v_spec, 'priority', 0, -1000, 1000, true)::integer,
                v_deps,
                ARRAY(SELECT jsonb_array_elements_text(CASE WHEN jsonb_typeof(v_spec->'locks') = 'array'
                                                            THEN v_spec->'locks' ELSE '[]'::jsonb END)),
                tasks_spec_number(v_spec, 'max_attempts', 3, 1, 20, true)::integer,
                tasks_spec_number(v_spec, 'timeout_seconds', 600, 1, 86400, false)::double precision,
                -- The wall clock, not the transaction's: tasks of one batch and equal priority are
                -- then claimed in spec order.
                clock_timestamp(),
                coalesce(nullif(v_spec->'bindings', 'null'::jsonb), '{}'::jsonb));
    END LOOP;

    -- Cycle check (Kahn): peel off new tasks with no dependency left among the remaining new ones;
    -- whatever cannot be peeled lies on a cycle or behind one. Existing tasks cannot depend on new
    -- ones, so a cycle can only run through this batch.
    v_remaining := v_new;
    LOOP
        SELECT coalesce(array_agg(t.id), '{}') INTO v_free FROM tasks t
        WHERE t.id = ANY (v_remaining) AND NOT (t.depends_on && v_remaining);
        EXIT WHEN cardinality(v_free) = 0;
        v_remaining := ARRAY(SELECT unnest(v_remaining) EXCEPT SELECT unnest(v_free));
    END LOOP;
    IF cardinality(v_remaining) > 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'DK002', COLUMN = 'depends_on', CONSTRAINT = 'dependency_cycle',
            DETAIL = (SELECT string_agg(key, ', ' ORDER BY key) FROM tasks WHERE id = ANY (v_remaining)),
            MESSAGE = 'the dependencies of the batch form a cycle';
    END IF;

    PERFORM tasks_settle_blocked(p_ticket_id);
    PERFORM tasks_promote_ready(p_ticket_id);
    RETURN QUERY
        SELECT t.* FROM unnest(v_ids) WITH ORDINALITY AS u(id, ord) JOIN tasks t ON t.id = u.id
        ORDER BY u.ord;
END;
$$;

-- ---------------------------------------------------------------------------------------------
-- Dispatching.

-- Claim up to p_max_count ready, due tasks (optionally only of the given capabilities) in one
-- statement: priority DESC, then creation order, FOR UPDATE SKIP LOCKED so concurrent dispatchers
-- never get the same task. Each becomes assigned under a lease of p_lease_seconds with attempt + 1
-- (the new fencing token). The dispatcher then calls assign_task_agent or release_task per task.
-- Returns the claimed rows in claim order. Errors: DK001 (dispatcher, max_count, lease_seconds).
CREATE FUNCTION claim_ready_tasks(p_dispatcher text, p_max_count integer, p_lease_seconds double precision,
                                  p_capabilities text[] DEFAULT NULL)
RETURNS SETOF tasks LANGUAGE plpgsql AS $$
BEGIN
    IF p_dispatcher IS NULL OR btrim(p_dispatcher) = '' THEN
        PERFORM tasks_invalid('dispatcher', 'dispatcher must name the claiming process');
    END IF;
    IF p_max_count IS NULL OR p_max_count < 1 OR p_max_count > 1000 THEN
        PERFORM tasks_invalid('max_count', 'max_count must be between 1 and 1000');
    END IF;
    IF p_lease_seconds IS NULL OR p_lease_seconds <= 0 THEN
        PERFORM tasks_invalid('lease_seconds', 'lease_seconds must be positive');
    END IF;
    RETURN QUERY
        WITH picked AS (
            SELECT id FROM tasks
            WHERE status = 'ready' AND not_before <= now()
              AND (p_capabilities IS NULL OR capability = ANY (p_capabilities))
            ORDER BY priority DESC, created_at, id
            LIMIT p_max_count
            FOR UPDATE SKIP LOCKED
        ), claimed AS (
            UPDATE tasks t SET status = 'assigned', attempt = t.attempt + 1, claimed_by = p_dispatcher,
                   assigned_agent = NULL, cancel_requested = false, wait_reason = NULL,
                   lease_expires_at = now() + make_interval(secs => p_lease_seconds),
                   deadline_at = NULL, updated_at = now()
            FROM picked WHERE t.id = picked.id
            RETURNING t.*
        )
        SELECT * FROM claimed ORDER BY priority DESC, created_at, id;
END;
$$;

-- Record the agent a claimed task was given. With p_capacity, the agent's tasks (assigned or
-- running) are counted under a per-agent advisory lock and the assignment is refused when it would
-- exceed p_capacity: two dispatchers choosing the same agent at once cannot overfill it.
-- p_lease_seconds, when given, renews the lease (time for the agent to start it).
-- Fenced: only while the task is assigned under p_attempt and not yet given to another agent.
-- Returns 'assigned' (also when repeated for the same agent), 'at_capacity', or NULL when fenced out.
CREATE FUNCTION assign_task_agent(p_id uuid, p_attempt integer, p_agent text, p_capacity integer DEFAULT NULL,
                                  p_lease_seconds double precision DEFAULT NULL)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_task tasks;
    v_load integer;
BEGIN
    IF p_agent IS NULL OR btrim(p_agent) = '' THEN
        PERFORM tasks_invalid('agent', 'agent must name the agent');
    END IF;
    IF p_capacity IS NOT NULL AND p_capacity < 0 THEN
        PERFORM tasks_invalid('capacity', 'capacity must not be negative');
    END IF;
    IF p_lease_seconds IS NOT NULL AND p_lease_seconds <= 0 THEN
        PERFORM tasks_invalid('lease_seconds', 'lease_seconds must be positive');
    END IF;
    IF p_capacity IS NOT NULL THEN
        -- Taken before any row lock; no other procedure takes it, so no lock cycle.
        PERFORM pg_advisory_xact_lock(hashtextextended('devtools_task_agent:' || p_agent, 0));
    END IF;
    SELECT * INTO v_task FROM tasks
    WHERE id = p_id AND status = 'assigned' AND attempt = p_attempt
      AND (assigned_agent IS NULL OR assigned_agent = p_agent)
    FOR UPDATE;
    IF v_task.id IS NULL THEN
        RETURN NULL;
    END IF;
    IF v_task.assigned_agent IS NULL AND p_capacity IS NOT NULL THEN
        SELECT count(*) INTO v_load FROM tasks
        WHERE assigned_agent = p_agent AND status IN ('assigned', 'running');
        IF v_load >= p_capacity THEN
            RETURN 'at_capacity';
        END IF;
    END IF;
    UPDATE tasks SET assigned_agent = p_agent, updated_at = now(),
           lease_expires_at = CASE WHEN p_lease_seconds IS NULL THEN lease_expires_at
                                   ELSE now() + make_interval(secs => p_lease_seconds) END
    WHERE id = p_id;
    RETURN 'assigned';
END;
$$;

-- A dispatcher's whole batch in one call: p_assignments is [{id, attempt, agent, capacity}, ...]; each
-- is assign_task_agent's decision, in order, in one transaction (the per-agent locks are held to its
-- end, so the capacity counts stay right across dispatchers). Returns (id, outcome) per assignment.
CREATE FUNCTION assign_task_agents(p_assignments jsonb, p_lease_seconds double precision DEFAULT NULL)
RETURNS TABLE (id uuid, outcome text) LANGUAGE plpgsql AS $$
DECLARE
    v_item jsonb;
BEGIN
    IF p_assignments IS NULL OR jsonb_typeof(p_assignments) <> 'array' THEN
        PERFORM tasks_invalid('assignments', 'assignments must be a JSON array');
    END IF;
    FOR v_item IN SELECT value FROM jsonb_array_elements(p_assignments) LOOP
        id := (v_item ->> 'id')::uuid;
        outcome := assign_task_agent(id, (v_item ->> 'attempt')::integer, v_item ->> 'agent',
                                     (v_item ->> 'capacity')::integer, p_lease_seconds);
        RETURN NEXT;
    END LOOP;
END;
$$;

-- Hand a claimed task back (no agent free, the send failed before the agent got it): ready again,
-- due after p_retry_in_seconds, with p_reason kept in wait_reason. Not a failure: the budget is
-- untouched (attempt still grows at the next claim, so this attempt's token stays dead).
-- Fenced: only while assigned under p_attempt. Returns whether it applied.
CREATE FUNCTION release_task(p_id uuid, p_attempt integer, p_retry_in_seconds double precision DEFAULT 0,
                             p_reason text DEFAULT NULL)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_capability text;
BEGIN
    IF p_retry_in_seconds IS NOT NULL AND p_retry_in_seconds < 0 THEN
        PERFORM tasks_invalid('retry_in_seconds', 'retry_in_seconds must not be negative');
    END IF;
    UPDATE tasks SET status = 'ready', assigned_agent = NULL, lease_expires_at = NULL,
           not_before = now() + make_interval(secs => coalesce(p_retry_in_seconds, 0)),
           wait_reason = left(p_reason, 1000), updated_at = now()
    WHERE id = p_id AND status = 'assigned' AND attempt = p_attempt
    RETURNING capability INTO v_capability;
    IF v_capability IS NULL THEN
        RETURN false;
    END IF;
    PERFORM pg_notify('devtools_tasks', v_capability);
    RETURN true;
END;
$$;

-- Tasks held per agent (assigned or running), for the dispatcher to compare with the registry's
-- capacity; only agents holding at least one task are listed. p_agents limits the answer.
CREATE FUNCTION agent_task_load(p_agents text[] DEFAULT NULL)
RETURNS TABLE (agent text, assigned integer, running integer) LANGUAGE sql STABLE AS $$
    SELECT t.assigned_agent,
           (count(*) FILTER (WHERE t.status = 'assigned'))::integer,
           (count(*) FILTER (WHERE t.status = 'running'))::integer
    FROM tasks t
    WHERE t.status IN ('assigned', 'running') AND t.assigned_agent IS NOT NULL
      AND (p_agents IS NULL OR t.assigned_agent = ANY (p_agents))
    GROUP BY t.assigned_agent
    ORDER BY t.assigned_agent;
$$;

-- When the next task becomes claimable or expirable without a notification: the earliest not_before
-- of a ready task (of the given capabilities), lease expiry or deadline. A dispatcher sleeps until then.
CREATE FUNCTION next_task_wakeup(p_capabilities text[] DEFAULT NULL)
RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT min(due) FROM (
        SELECT min(not_before) AS due FROM tasks
        WHERE status = 'ready' AND (p_capabilities IS NULL OR capability = ANY (p_capabilities))
        UNION ALL
        SELECT min(lease_expires_at) FROM tasks WHERE status IN ('assigned', 'running')
        UNION ALL
        SELECT min(deadline_at) FROM tasks WHERE status = 'running'
    ) AS wakeups;
$$;

-- ---------------------------------------------------------------------------------------------
-- What the agent's attempt reports (relayed by the dispatcher), all fenced by attempt.

-- The agent took the task: running, with the deadline now() + timeout_seconds, and the lease renewed
-- when p_lease_seconds is given. Fenced: assigned under p_attempt to p_agent (or to no agent yet);
-- repeated for a task already running under that attempt and agent it answers true and changes
-- nothing (the deadline is not pushed back). Returns whether the attempt holds the task.
CREATE FUNCTION start_task(p_id uuid, p_attempt integer, p_agent text, p_lease_seconds double precision DEFAULT NULL)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF p_agent IS NULL OR btrim(p_agent) = '' THEN
        PERFORM tasks_invalid('agent', 'agent must name the agent');
    END IF;
    UPDATE tasks SET status = 'running', assigned_agent = p_agent, started_at = now(),
           deadline_at = now() + make_interval(secs => timeout_seconds),
           lease_expires_at = CASE WHEN p_lease_seconds IS NULL THEN lease_expires_at
                                   ELSE now() + make_interval(secs => p_lease_seconds) END,
           updated_at = now()
    WHERE id = p_id AND status = 'assigned' AND attempt = p_attempt
      AND (assigned_agent IS NULL OR assigned_agent = p_agent);
    IF FOUND THEN
        RETURN true;
    END IF;
    RETURN EXISTS (SELECT 1 FROM tasks WHERE id = p_id AND status = 'running' AND attempt = p_attempt
                     AND assigned_agent = p_agent);
END;
$$;

-- Renew the attempt's lease. NULL: fenced out (another attempt holds the task, or it ended): stop.
-- Otherwise whether a cancel was requested: a task cancelled while this attempt held it answers true
-- (without renewing anything) so the agent stops the work.
CREATE FUNCTION heartbeat_task(p_id uuid, p_attempt integer, p_lease_seconds double precision)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_cancel boolean;
BEGIN
    IF p_lease_seconds IS NULL OR p_lease_seconds <= 0 THEN
        PERFORM tasks_invalid('lease_seconds', 'lease_seconds must be positive');
    END IF;
    UPDATE tasks SET lease_expires_at = now() + make_interval(secs => p_lease_seconds), updated_at = now()
    WHERE id = p_id AND status IN ('assigned', 'running') AND attempt = p_attempt
    RETURNING cancel_requested INTO v_cancel;
    IF FOUND THEN
        RETURN v_cancel;
    END IF;
    SELECT true INTO v_cancel FROM tasks
    WHERE id = p_id AND status = 'cancelled' AND attempt = p_attempt AND cancel_requested;
    RETURN v_cancel;
END;
$$;

-- The attempt succeeded: result stored, dependants whose dependencies all succeeded become ready
-- (NOTIFY 'devtools_tasks'). Fenced: only while assigned/running under p_attempt, so a late answer
-- from an expired, reassigned, timed-out or cancelled attempt changes nothing. Returns whether it applied.
CREATE FUNCTION complete_task(p_id uuid, p_attempt integer, p_result jsonb)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_ticket uuid;
BEGIN
    SELECT ticket_id INTO v_ticket FROM tasks WHERE id = p_id;
    IF v_ticket IS NULL THEN
        RETURN false;
    END IF;
    PERFORM tasks_lock_ticket(v_ticket);
    UPDATE tasks SET status = 'succeeded', result = coalesce(p_result, 'null'::jsonb), error = NULL,
           error_class = NULL, error_kind = NULL, lease_expires_at = NULL, deadline_at = NULL,
           finished_at = now(), updated_at = now()
    WHERE id = p_id AND status IN ('assigned', 'running') AND attempt = p_attempt;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM tasks_promote_ready(v_ticket);
    PERFORM tasks_notify_ticket(v_ticket);
    RETURN true;
END;
$$;

-- The retry policy, in one place: exponential backoff with full jitter. The delay after the n-th
-- failure is uniform in [0, least(cap, base * 2^(n-1))]; a Retry-After (rate limit) is a floor.
-- Full jitter spreads the retries of many tasks that failed together instead of sending them in waves.
CREATE FUNCTION tasks_retry_delay(p_failure integer, p_retry_after double precision,
                                  p_base_seconds double precision, p_cap_seconds double precision)
RETURNS double precision LANGUAGE sql VOLATILE AS $$
    SELECT greatest(random() * least(p_cap_seconds, p_base_seconds * power(2, least(greatest(p_failure, 1) - 1, 60))),
                    coalesce(p_retry_after, 0));
$$;

-- The attempt failed. Retryable with attempts left: ready again, due at now() + p_retry_in_seconds
-- (the caller's full-jitter backoff, at least a Retry-After). Otherwise failed for good, and every
-- transitive dependant is blocked naming this task. p_error_kind (timeout, rate_limited, ...) is kept
-- for people and metrics; the decision follows p_error_class only. Fenced: only while assigned/running
-- under p_attempt. Returns the new status ('ready' or 'failed'), NULL when fenced out.
-- Errors: DK001 (error_class, retry_in_seconds, error_kind).
CREATE FUNCTION fail_task(p_id uuid, p_attempt integer, p_error text, p_error_class text,
                          p_retry_in_seconds double precision DEFAULT NULL, p_error_kind text DEFAULT NULL)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_task tasks;
    v_retry boolean;
BEGIN
    IF p_error_class IS NULL OR p_error_class NOT IN ('retryable', 'permanent') THEN
        PERFORM tasks_invalid('error_class', format('error_class must be retryable or permanent, got %L',
                                                    p_error_class));
    END IF;
    IF p_retry_in_seconds IS NOT NULL AND p_retry_in_seconds < 0 THEN
        PERFORM tasks_invalid('retry_in_seconds', 'retry_in_seconds must not be negative');
    END IF;
    IF p_error_kind IS NOT NULL AND p_error_kind !~ '^[a-z][a-z_]{0,39}$' THEN
        PERFORM tasks_invalid('error_kind', format('error_kind %L is not a kind name', p_error_kind));
    END IF;
    SELECT ticket_id INTO v_task.ticket_id FROM tasks WHERE id = p_id;
    IF v_task.ticket_id IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM tasks_lock_ticket(v_task.ticket_id);
    SELECT * INTO v_task FROM tasks
    WHERE id = p_id AND status IN ('assigned', 'running') AND attempt = p_attempt
    FOR UPDATE;
    IF v_task.id IS NULL THEN
        RETURN NULL;
    END IF;
    v_retry := p_error_class = 'retryable' AND v_task.failures + 1 < v_task.max_attempts;
    UPDATE tasks SET
        status = CASE WHEN v_retry THEN 'ready' ELSE 'failed' END,
        failures = failures + 1,
        not_before = CASE WHEN v_retry THEN now() + make_interval(secs => coalesce(p_retry_in_seconds, 0))
                          ELSE not_before END,
        error = left(coalesce(p_error, ''), 10000), error_class = p_error_class, error_kind = p_error_kind,
        lease_expires_at = NULL, deadline_at = NULL,
        finished_at = CASE WHEN v_retry THEN NULL ELSE now() END, updated_at = now()
    WHERE id = p_id;
    IF v_retry THEN
        PERFORM pg_notify('devtools_tasks', v_task.capability);
        RETURN 'ready';
    END IF;
    PERFORM tasks_settle_blocked(v_task.ticket_id);
    PERFORM tasks_notify_ticket(v_task.ticket_id);
    RETURN 'failed';
END;
$$;

-- An attempt's failure with the delay computed here from the retry policy (tasks_retry_delay), as
-- an agent records its own outcome and as the store does: retryable with attempts left -> ready
-- after the backoff (at least p_retry_after); otherwise failed. Fenced like fail_task.
CREATE FUNCTION fail_task_attempt(p_id uuid, p_attempt integer, p_error text, p_error_class text,
                                  p_error_kind text DEFAULT NULL, p_retry_after double precision DEFAULT NULL,
                                  p_base_seconds double precision DEFAULT 1,
                                  p_cap_seconds double precision DEFAULT 300)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_failures integer;
BEGIN
    IF p_retry_after IS NOT NULL AND p_retry_after < 0 THEN
        PERFORM tasks_invalid('retry_after', 'retry_after must not be negative');
    END IF;
    SELECT failures INTO v_failures FROM tasks WHERE id = p_id AND attempt = p_attempt;
    IF v_failures IS NULL THEN
        RETURN NULL;  -- unknown task or another attempt: fenced out
    END IF;
    RETURN fail_task(p_id, p_attempt, p_error, p_error_class,
                     CASE WHEN p_error_class = 'retryable'
                          THEN tasks_retry_delay(v_failures + 1, p_retry_after, p_base_seconds, p_cap_seconds)
                     END,
                     p_error_kind);
END;
$$;

-- Expire what nobody is looking after any more:
--   * running past deadline_at (timeout_seconds since start): error_kind 'timeout';
--   * assigned/running whose lease expired (the agent or dispatcher stopped heartbeating: killed,
--     partitioned): error_kind 'agent_gone'.
-- Both are retryable failures counted against max_attempts: with attempts left the task is ready
-- again after a full-jitter backoff (random() * least(cap, base * 2^failures), the same policy as
-- agent_orchestrator/tasks/backoff.py, whose values the caller passes); out of attempts it ends as
-- timed_out (timeout) or failed (agent gone) and its dependants are blocked. The returned rows show
-- the new status while attempt and assigned_agent still name the expired attempt, so the caller
-- can cancel the work at that agent and emit events; that attempt's late answers are fenced out.
CREATE FUNCTION expire_task_leases(p_retry_base_seconds double precision DEFAULT 1,
                                   p_retry_cap_seconds double precision DEFAULT 300)
RETURNS SETOF tasks LANGUAGE plpgsql AS $$
DECLARE
    v_ticket uuid;
    v_task tasks;
    v_timeout boolean;
    v_retry boolean;
    v_delay double precision;
    v_changed tasks;
BEGIN
    IF p_retry_base_seconds IS NULL OR p_retry_base_seconds < 0 THEN
        PERFORM tasks_invalid('retry_base_seconds', 'retry_base_seconds must not be negative');
    END IF;
    IF p_retry_cap_seconds IS NULL OR p_retry_cap_seconds < 0 THEN
        PERFORM tasks_invalid('retry_cap_seconds', 'retry_cap_seconds must not be negative');
    END IF;
    -- Ticket locks in one global order (by id), each before its rows: no lock cycle with another
    -- expirer or with complete/fail/cancel, which take one ticket lock then rows.
    FOR v_ticket IN
        SELECT DISTINCT ticket_id FROM tasks
        WHERE (status IN ('assigned', 'running') AND lease_expires_at < now())
           OR (status = 'running' AND deadline_at < now())
        ORDER BY ticket_id
    LOOP
        PERFORM tasks_lock_ticket(v_ticket);
        FOR v_task IN
            -- Re-checked under the lock: a heartbeat or completion may have come in meanwhile.
            SELECT * FROM tasks
            WHERE ticket_id = v_ticket
              AND ((status IN ('assigned', 'running') AND lease_expires_at < now())
                   OR (status = 'running' AND deadline_at < now()))
            ORDER BY created_at, id
            FOR UPDATE
        LOOP
            v_timeout := v_task.status = 'running' AND v_task.deadline_at < now();
            v_retry := v_task.failures + 1 < v_task.max_attempts;
            v_delay := tasks_retry_delay(v_task.failures + 1, NULL, p_retry_base_seconds, p_retry_cap_seconds);
            UPDATE tasks SET
                status = CASE WHEN v_retry THEN 'ready' WHEN v_timeout THEN 'timed_out' ELSE 'failed' END,
                failures = failures + 1,
                not_before = CASE WHEN v_retry THEN now() + make_interval(secs => v_delay) ELSE not_before END,
                error = CASE WHEN v_timeout
                             THEN format('timed out after %s s on attempt %s', timeout_seconds, attempt)
                             ELSE format('%s stopped heartbeating (lease expired) on attempt %s',
                                         coalesce('agent ' || assigned_agent, 'dispatcher ' || claimed_by),
                                         attempt) END,
                error_class = 'retryable',
                error_kind = CASE WHEN v_timeout THEN 'timeout' ELSE 'agent_gone' END,
                lease_expires_at = NULL, deadline_at = NULL,
                finished_at = CASE WHEN v_retry THEN NULL ELSE now() END, updated_at = now()
            WHERE id = v_task.id
            RETURNING * INTO v_changed;
            IF v_retry THEN
                PERFORM pg_notify('devtools_tasks', v_changed.capability);
            END IF;
            RETURN NEXT v_changed;
        END LOOP;
        PERFORM tasks_settle_blocked(v_ticket);
        PERFORM tasks_notify_ticket(v_ticket);
    END LOOP;
END;
$$;

-- ---------------------------------------------------------------------------------------------
-- What people (or the ticket workflow) decide.

-- Cancel a task that has not finished (pending, ready, assigned, running or blocked): cancelled at
-- once, with cancel_requested set when an agent's attempt holds it (its next heartbeat answers true,
-- and its completion is fenced out); dependants are blocked. Returns the row after the call (a
-- finished task is returned unchanged: its status tells). Errors: DK404 unknown task.
CREATE FUNCTION cancel_task(p_id uuid, p_by text)
RETURNS SETOF tasks LANGUAGE plpgsql AS $$
DECLARE
    v_ticket uuid;
BEGIN
    SELECT ticket_id INTO v_ticket FROM tasks WHERE id = p_id;
    IF v_ticket IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'DK404', MESSAGE = format('unknown task %s', p_id);
    END IF;
    PERFORM tasks_lock_ticket(v_ticket);
    UPDATE tasks SET status = 'cancelled', cancel_requested = status IN ('assigned', 'running'),
           error = format('cancelled by %s', coalesce(p_by, '?')), error_class = NULL, error_kind = NULL,
           lease_expires_at = NULL, deadline_at = NULL, finished_at = now(), updated_at = now()
    WHERE id = p_id AND status IN ('pending', 'ready', 'assigned', 'running', 'blocked');
    IF FOUND THEN
        PERFORM tasks_settle_blocked(v_ticket);
        PERFORM tasks_notify_ticket(v_ticket);
    END IF;
    RETURN QUERY SELECT * FROM tasks WHERE id = p_id;
END;
$$;

-- Cancel every unfinished task of a ticket (the ticket was cancelled), as cancel_task does for one.
-- Returns the tasks it cancelled; those with cancel_requested name the agent to stop.
-- Errors: DK404 unknown ticket.
CREATE FUNCTION cancel_ticket_tasks(p_ticket_id uuid, p_by text)
RETURNS SETOF tasks LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM tickets WHERE id = p_ticket_id) THEN
        RAISE EXCEPTION USING ERRCODE = 'DK404', MESSAGE = format('unknown ticket %s', p_ticket_id);
    END IF;
    PERFORM tasks_lock_ticket(p_ticket_id);
    RETURN QUERY
        UPDATE tasks SET status = 'cancelled', cancel_requested = status IN ('assigned', 'running'),
               error = format('cancelled by %s (ticket cancelled)', coalesce(p_by, '?')),
               error_class = NULL, error_kind = NULL, lease_expires_at = NULL, deadline_at = NULL,
               finished_at = now(), updated_at = now()
        WHERE ticket_id = p_ticket_id AND status IN ('pending', 'ready', 'assigned', 'running', 'blocked')
        RETURNING *;
    PERFORM tasks_notify_ticket(p_ticket_id);
END;
$$;

-- Give a task that ended without success (failed, timed_out, cancelled, blocked) a fresh start:
-- failures back to 0, ready when its dependencies all succeeded (else pending), and the dependants
-- it blocked back to pending (those still blocked by another failure stay blocked). A blocked task
-- can only be retried once what blocks it is retried: DK002 names that dependency. Returns the row
-- after the call (any other status: unchanged). Errors: DK404 unknown task, DK002.
CREATE FUNCTION retry_task(p_id uuid, p_by text)
RETURNS SETOF tasks LANGUAGE plpgsql AS $$
DECLARE
    v_task tasks;
    v_dep tasks;
BEGIN
    SELECT ticket_id INTO v_task.ticket_id FROM tasks WHERE id = p_id;
    IF v_task.ticket_id IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'DK404', MESSAGE = format('unknown task %s', p_id);
    END IF;
    PERFORM tasks_lock_ticket(v_task.ticket_id);
    SELECT * INTO v_task FROM tasks WHERE id = p_id FOR UPDATE;
    IF v_task.status NOT IN ('failed', 'timed_out', 'cancelled', 'blocked') THEN
        RETURN QUERY SELECT * FROM tasks WHERE id = p_id;
        RETURN;
    END IF;
    SELECT * INTO v_dep FROM tasks
    WHERE id = ANY (v_task.depends_on) AND status IN ('failed', 'timed_out', 'cancelled', 'blocked')
    ORDER BY created_at, id LIMIT 1;
    IF v_dep.id IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'DK002', DETAIL = v_dep.id::text,
            CONSTRAINT = 'dependency_unfinished',
            MESSAGE = format('task %L cannot be retried while its dependency %L (%s) is %s: retry that first',
                             v_task.key, v_dep.key, v_dep.id, v_dep.status);
    END IF;
    UPDATE tasks SET status = 'pending', failures = 0, cancel_requested = false, result = NULL,
           blocked_reason = NULL, wait_reason = NULL, lease_expires_at = NULL, deadline_at = NULL,
           finished_at = NULL, not_before = now(), updated_at = now(),
           -- The last error stays for the record until the next attempt replaces or clears it.
           error = CASE WHEN error IS NULL THEN NULL ELSE error || format(' (retried by %s)', coalesce(p_by, '?')) END
    WHERE id = p_id;
    -- Unblock everything downstream; tasks_settle_blocked re-blocks what another failure still blocks.
    WITH RECURSIVE downstream(id) AS (
        SELECT t.id FROM tasks t WHERE t.ticket_id = v_task.ticket_id AND p_id = ANY (t.depends_on)
        UNION
        SELECT t.id FROM tasks t JOIN downstream d ON d.id = ANY (t.depends_on)
        WHERE t.ticket_id = v_task.ticket_id
    )
    UPDATE tasks SET status = 'pending', blocked_reason = NULL, finished_at = NULL, updated_at = now()
    WHERE id IN (SELECT id FROM downstream) AND status = 'blocked';
    PERFORM tasks_settle_blocked(v_task.ticket_id);
    PERFORM tasks_promote_ready(v_task.ticket_id);
    PERFORM tasks_notify_ticket(v_task.ticket_id);
    RETURN QUERY SELECT * FROM tasks WHERE id = p_id;
END;
$$;

-- ---------------------------------------------------------------------------------------------
-- Reading.

-- How a ticket's phase (every phase with p_phase NULL) stands: its task count, counts by status and
-- whether all tasks are final (succeeded, failed, timed_out, cancelled, blocked: nothing will move
-- without a person) and all succeeded. The ticket workflow polls this to know its phase is done.
-- No tasks: total 0, all_final and all_succeeded true (vacuously). Errors: DK404 unknown ticket.
CREATE FUNCTION phase_task_summary(p_ticket_id uuid, p_phase text DEFAULT NULL)
RETURNS TABLE (total integer, counts jsonb, all_final boolean, all_succeeded boolean)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM tickets WHERE id = p_ticket_id) THEN
        RAISE EXCEPTION USING ERRCODE = 'DK404', MESSAGE = format('unknown ticket %s', p_ticket_id);
    END IF;
    RETURN QUERY
        SELECT coalesce(sum(s.n), 0)::integer,
               coalesce(jsonb_object_agg(s.status, s.n), '{}'::jsonb),
               coalesce(bool_and(s.status IN ('succeeded', 'failed', 'timed_out', 'cancelled', 'blocked')), true),
               coalesce(bool_and(s.status = 'succeeded'), true)
        FROM (SELECT t.status, count(*)::integer AS n FROM tasks t
              WHERE t.ticket_id = p_ticket_id AND (p_phase IS NULL OR t.phase = p_phase)
              GROUP BY t.status) AS s;
END;
$$;

-- Every change of a task's status is an event of its ticket's run (the ticket's SSE stream and
-- `devtools ticket show` read them), written in the same transaction as the change itself.
CREATE FUNCTION tasks_status_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_run uuid;
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.status IS NOT DISTINCT FROM NEW.status THEN
        RETURN NULL;
    END IF;
    SELECT run_id INTO v_run FROM tickets WHERE id = NEW.ticket_id;
    IF v_run IS NOT NULL THEN
        PERFORM add_run_event(v_run, 'task_' || NEW.status, NULL, jsonb_strip_nulls(jsonb_build_object(
            'task_id', NEW.id, 'key', NEW.key, 'phase', NEW.phase, 'attempt', NEW.attempt,
            'agent', NEW.assigned_agent, 'error', left(NEW.error, 500), 'error_class', NEW.error_class,
            'error_kind', NEW.error_kind, 'blocked_reason', NEW.blocked_reason)));
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER tasks_status_event AFTER INSERT OR UPDATE OF status ON tasks
    FOR EACH ROW EXECUTE FUNCTION tasks_status_event();
