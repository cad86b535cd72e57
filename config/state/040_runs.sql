-- The durable run queue: the platform's one queue of work. A run is a row; workers
-- claim rows with FOR UPDATE SKIP LOCKED under a lease they keep renewing, and
-- LISTEN/NOTIFY on channel 'devtools_runs' wakes idle workers. Generic on purpose:
-- `queue` separates kinds of work (workflow runs today; tickets and tasks later).
--
-- Lifecycle: queued -> running -> succeeded | failed | cancelled, with
-- running -> interrupted (waiting for a person) -> queued (resumed) and
-- running -> queued (retry after backoff, not_before in the future).
-- A running row whose lease expired is claimable again (its worker died).
-- `attempts` counts claims and is the fencing token: every call a worker makes about
-- a run passes (worker, attempt), and a stale worker's calls do nothing. `failures`
-- counts failed or lost (lease expired) attempts against `max_attempts`; a resume
-- after an approval starts a fresh budget.

CREATE TABLE runs (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    queue                  text NOT NULL DEFAULT 'workflows',
    workflow               text NOT NULL,
    input                  jsonb NOT NULL DEFAULT '{}'::jsonb,
    status                 text NOT NULL DEFAULT 'queued'
                           CHECK (status IN ('queued', 'running', 'interrupted',
                                             'succeeded', 'failed', 'cancelled')),
    priority               integer NOT NULL DEFAULT 0,      -- higher runs first
    not_before             timestamptz NOT NULL DEFAULT now(),
    attempts               integer NOT NULL DEFAULT 0,      -- claims so far; the fencing token
    failures               integer NOT NULL DEFAULT 0,      -- failed or lost attempts since (re)start
    max_attempts           integer NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    lease_owner            text,
    lease_expires_at       timestamptz,
    cancel_requested       boolean NOT NULL DEFAULT false,
    interrupt              jsonb,      -- pending interrupt payloads while interrupted
    resume                 jsonb,      -- the decision to resume with (approve/reject)
    result                 jsonb,
    error                  text,
    created_by             text,
    parent_run_id          uuid REFERENCES runs (id) ON DELETE SET NULL,
    forked_from_checkpoint text,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    started_at             timestamptz,
    finished_at            timestamptz
);

CREATE INDEX runs_claim_idx ON runs (queue, priority DESC, created_at) WHERE status = 'queued';
CREATE INDEX runs_lease_idx ON runs (lease_expires_at) WHERE status = 'running';
CREATE INDEX runs_status_idx ON runs (status, created_at DESC);
CREATE INDEX runs_finished_idx ON runs (finished_at) WHERE finished_at IS NOT NULL;

-- Node progress and lifecycle events of a run, streamed to clients (SSE) of any process.
CREATE TABLE run_events (
    id         bigserial PRIMARY KEY,
    run_id     uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    kind       text NOT NULL,
    node       text,
    data       jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX run_events_run_idx ON run_events (run_id, id);

-- Side effects recorded once per run and step (see agent_orchestrator/runs/effects.py).
CREATE TABLE run_step_effects (
    run_id     uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step_key   text NOT NULL,
    result     jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, step_key)
);

CREATE FUNCTION add_run_event(p_run_id uuid, p_kind text, p_node text, p_data jsonb)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
BEGIN
    INSERT INTO run_events (run_id, kind, node, data)
    VALUES (p_run_id, p_kind, p_node, coalesce(p_data, '{}'::jsonb))
    RETURNING id INTO v_id;
    PERFORM pg_notify('devtools_run_events', p_run_id::text);
    RETURN v_id;
END;
$$;

CREATE FUNCTION enqueue_run(
    p_workflow text, p_input jsonb, p_priority integer DEFAULT 0, p_not_before timestamptz DEFAULT NULL,
    p_created_by text DEFAULT NULL, p_queue text DEFAULT 'workflows', p_max_attempts integer DEFAULT 3,
    p_parent_run_id uuid DEFAULT NULL, p_forked_from_checkpoint text DEFAULT NULL, p_id uuid DEFAULT NULL
) RETURNS SETOF runs LANGUAGE plpgsql AS $$
DECLARE
    v_run runs;
BEGIN
    INSERT INTO runs (id, queue, workflow, input, priority, not_before, created_by, max_attempts,
                      parent_run_id, forked_from_checkpoint)
    VALUES (coalesce(p_id, gen_random_uuid()), p_queue, p_workflow, coalesce(p_input, '{}'::jsonb),
            p_priority, coalesce(p_not_before, now()), p_created_by, p_max_attempts,
            p_parent_run_id, p_forked_from_checkpoint)
    RETURNING * INTO v_run;
    PERFORM add_run_event(v_run.id, 'queued', NULL, jsonb_build_object('workflow', p_workflow));
    PERFORM pg_notify('devtools_runs', p_queue);
    RETURN NEXT v_run;
END;
$$;

-- Claim the most urgent runnable run of the given queues: queued and due, or running
-- with an expired lease (its worker died; the new claim resumes from the checkpoint).
-- A run whose lease expired on its last allowed attempt is failed instead.
CREATE FUNCTION claim_run(p_worker text, p_lease_seconds double precision, p_queues text[] DEFAULT NULL)
RETURNS SETOF runs LANGUAGE plpgsql AS $$
DECLARE
    v_lost runs;
    v_id uuid;
    v_run runs;
BEGIN
    FOR v_lost IN
        UPDATE runs SET status = 'failed', failures = failures + 1,
               error = 'worker lost (lease expired) on the last allowed attempt',
               lease_owner = NULL, lease_expires_at = NULL, finished_at = now(), updated_at = now()
        WHERE id IN (
            SELECT id FROM runs
            WHERE status = 'running' AND lease_expires_at < now() AND failures + 1 >= max_attempts
              AND (p_queues IS NULL OR queue = ANY (p_queues))
            FOR UPDATE SKIP LOCKED)
        RETURNING *
    LOOP
        PERFORM add_run_event(v_lost.id, 'failed', NULL, jsonb_build_object('error', v_lost.error));
    END LOOP;

    SELECT id INTO v_id FROM runs
    WHERE ((status = 'queued' AND not_before <= now())
           OR (status = 'running' AND lease_expires_at < now()))
      AND (p_queues IS NULL OR queue = ANY (p_queues))
    ORDER BY priority DESC, created_at, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED;
    IF v_id IS NULL THEN
        RETURN;
    END IF;

    UPDATE runs SET
        failures = failures + CASE WHEN status = 'running' THEN 1 ELSE 0 END,
        status = 'running', lease_owner = p_worker,
        lease_expires_at = now() + make_interval(secs => p_lease_seconds),
        attempts = attempts + 1, started_at = coalesce(started_at, now()), updated_at = now()
    WHERE id = v_id
    RETURNING * INTO v_run;
    PERFORM add_run_event(v_id, 'claimed', NULL,
        jsonb_build_object('worker', p_worker, 'attempt', v_run.attempts, 'failures', v_run.failures));
    RETURN NEXT v_run;
END;
$$;

-- Extend a lease. Returns NULL when the caller no longer holds it (fenced out),
-- otherwise whether a cancel was requested meanwhile.
CREATE FUNCTION renew_run_lease(p_id uuid, p_worker text, p_attempt integer, p_lease_seconds double precision)
RETURNS boolean LANGUAGE sql AS $$
    UPDATE runs SET lease_expires_at = now() + make_interval(secs => p_lease_seconds), updated_at = now()
    WHERE id = p_id AND status = 'running' AND lease_owner = p_worker AND attempts = p_attempt
    RETURNING cancel_requested;
$$;

CREATE FUNCTION finish_run(p_id uuid, p_worker text, p_attempt integer, p_result jsonb)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    UPDATE runs SET status = 'succeeded', result = p_result, error = NULL, interrupt = NULL, resume = NULL,
           lease_owner = NULL, lease_expires_at = NULL, finished_at = now(), updated_at = now()
    WHERE id = p_id AND status = 'running' AND lease_owner = p_worker AND attempts = p_attempt;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM add_run_event(p_id, 'succeeded', NULL, '{}'::jsonb);
    RETURN true;
END;
$$;

-- Fail an attempt: with p_retry_seconds set and attempts left, the run goes back to
-- the queue, due after the backoff; otherwise it is failed for good.
CREATE FUNCTION fail_run(p_id uuid, p_worker text, p_attempt integer, p_error text,
                         p_retry_seconds double precision DEFAULT NULL)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_run runs;
    v_retry boolean;
BEGIN
    SELECT * INTO v_run FROM runs
    WHERE id = p_id AND status = 'running' AND lease_owner = p_worker AND attempts = p_attempt
    FOR UPDATE;
    IF v_run.id IS NULL THEN
        RETURN NULL;
    END IF;
    v_retry := p_retry_seconds IS NOT NULL AND v_run.failures + 1 < v_run.max_attempts;
    UPDATE runs SET
        status = CASE WHEN v_retry THEN 'queued' ELSE 'failed' END,
        failures = failures + 1,
        not_before = CASE WHEN v_retry THEN now() + make_interval(secs => p_retry_seconds) ELSE not_before END,
        finished_at = CASE WHEN v_retry THEN NULL ELSE now() END,
        error = p_error, lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
    WHERE id = p_id;
    IF v_retry THEN
        PERFORM add_run_event(p_id, 'retry_scheduled', NULL,
            jsonb_build_object('error', p_error, 'delay_seconds', p_retry_seconds));
        PERFORM pg_notify('devtools_runs', v_run.queue);
        RETURN 'queued';
    END IF;
    PERFORM add_run_event(p_id, 'failed', NULL, jsonb_build_object('error', p_error));
    RETURN 'failed';
END;
$$;

CREATE FUNCTION interrupt_run(p_id uuid, p_worker text, p_attempt integer, p_interrupt jsonb)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    UPDATE runs SET status = 'interrupted', interrupt = p_interrupt, resume = NULL,
           lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
    WHERE id = p_id AND status = 'running' AND lease_owner = p_worker AND attempts = p_attempt;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM add_run_event(p_id, 'interrupted', NULL, jsonb_build_object('interrupt', p_interrupt));
    RETURN true;
END;
$$;

-- Resume an interrupted run with a decision: it is queued again and the worker
-- that claims it passes the decision to the waiting interrupt(). Resuming does
-- not use up the run's retry budget (failures restart at 0).
CREATE FUNCTION resume_run(p_id uuid, p_resume jsonb, p_by text)
RETURNS SETOF runs LANGUAGE plpgsql AS $$
DECLARE
    v_run runs;
BEGIN
    UPDATE runs SET status = 'queued', resume = p_resume, interrupt = NULL, not_before = now(), failures = 0,
           updated_at = now()
    WHERE id = p_id AND status = 'interrupted'
    RETURNING * INTO v_run;
    IF v_run.id IS NULL THEN
        RETURN;
    END IF;
    PERFORM add_run_event(p_id, 'resumed', NULL, jsonb_build_object('by', p_by, 'resume', p_resume));
    PERFORM pg_notify('devtools_runs', v_run.queue);
    RETURN NEXT v_run;
END;
$$;

-- Cancel: a queued or interrupted run is cancelled at once; a running one is flagged
-- and its worker stops it at the next lease renewal. Returns the row (status tells which).
CREATE FUNCTION cancel_run(p_id uuid, p_by text)
RETURNS SETOF runs LANGUAGE plpgsql AS $$
DECLARE
    v_run runs;
BEGIN
    UPDATE runs SET
        status = CASE WHEN status IN ('queued', 'interrupted') THEN 'cancelled' ELSE status END,
        cancel_requested = true,
        finished_at = CASE WHEN status IN ('queued', 'interrupted') THEN now() ELSE finished_at END,
        error = CASE WHEN status IN ('queued', 'interrupted') THEN 'cancelled by ' || coalesce(p_by, '?')
                     ELSE error END,
        updated_at = now()
    WHERE id = p_id AND status IN ('queued', 'interrupted', 'running')
    RETURNING * INTO v_run;
    IF v_run.id IS NULL THEN
        RETURN;
    END IF;
    PERFORM add_run_event(p_id, CASE WHEN v_run.status = 'cancelled' THEN 'cancelled' ELSE 'cancel_requested' END,
                          NULL, jsonb_build_object('by', p_by));
    RETURN NEXT v_run;
END;
$$;

-- A worker stopping a run it holds because cancel was requested.
CREATE FUNCTION mark_run_cancelled(p_id uuid, p_worker text, p_attempt integer)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    UPDATE runs SET status = 'cancelled', lease_owner = NULL, lease_expires_at = NULL,
           finished_at = now(), updated_at = now(), error = coalesce(error, 'cancelled')
    WHERE id = p_id AND status = 'running' AND lease_owner = p_worker AND attempts = p_attempt;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM add_run_event(p_id, 'cancelled', NULL, '{}'::jsonb);
    RETURN true;
END;
$$;

-- When the next run becomes claimable without a notification: the earliest future
-- not_before of a queued run or lease expiry of a running one (a worker sleeps until then).
CREATE FUNCTION next_run_wakeup(p_queues text[] DEFAULT NULL)
RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT min(t) FROM (
        SELECT min(not_before) AS t FROM runs
        WHERE status = 'queued' AND (p_queues IS NULL OR queue = ANY (p_queues))
        UNION ALL
        SELECT min(lease_expires_at) FROM runs
        WHERE status = 'running' AND (p_queues IS NULL OR queue = ANY (p_queues))
    ) AS due;
$$;

-- A worker shutting down hands a run it holds back to the queue at once (no failure
-- counted); the next claim resumes it from its last checkpoint.
CREATE FUNCTION release_run(p_id uuid, p_worker text, p_attempt integer)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_queue text;
BEGIN
    UPDATE runs SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL, not_before = now(),
           updated_at = now()
    WHERE id = p_id AND status = 'running' AND lease_owner = p_worker AND attempts = p_attempt
    RETURNING queue INTO v_queue;
    IF v_queue IS NULL THEN
        RETURN false;
    END IF;
    PERFORM add_run_event(p_id, 'released', NULL, jsonb_build_object('worker', p_worker));
    PERFORM pg_notify('devtools_runs', v_queue);
    RETURN true;
END;
$$;
