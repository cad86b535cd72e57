-- Phase gates: what a ticket's phase must prove before the ticket moves on (declared per phase in
-- config/phases/*.yaml under `gate:`, evaluated by agent_orchestrator/tickets/gates).
--
-- phase_gate_artifacts: what the tasks of a phase produced (a review, a test report, a deployment,
-- a branch, a document, a build, a plan), recorded when the tasks are done. One row per
-- (task, kind): recording again is idempotent, and a later attempt of the same task (a retry)
-- replaces what an earlier attempt recorded, never the other way round.
--
-- phase_gate_results: one row per evaluation of a gate: every criterion with passed (true, false,
-- or null while it waits for a person), the measured and the expected value and a detail in words,
-- the verdict, who evaluated it and when. Rows are never changed: the history of a gate is its rows.
--
-- `phase` is the phase *visit* label, not only the phase name: a ticket sent back to an earlier phase
-- by a failed gate visits it again, and each visit has its own tasks, artifacts and results. The label
-- is the phase name for the first visit and `NAME#n` for the n-th (agent_orchestrator.tickets.gates
-- .visit_label); here it is any text of 1 to 100 characters, as tasks.phase.
--
-- Errors, as config/state/070_tickets.sql: 'DT001' invalid argument (COLUMN = the argument),
-- 'DT404' unknown ticket (DETAIL 'ticket_id=<id>'). agent_orchestrator/tickets/errors.py maps them.

CREATE TABLE phase_gate_artifacts (
    id          bigserial PRIMARY KEY,
    ticket_id   uuid NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    phase       text NOT NULL CHECK (btrim(phase) <> '' AND length(phase) <= 100),
    kind        text NOT NULL
                CHECK (kind IN ('branch', 'test_report', 'review', 'deployment', 'document', 'build', 'plan')),
    task_id     uuid REFERENCES tasks (id) ON DELETE SET NULL,
    task_key    text,                      -- kept when the task row is gone: which task made it
    attempt     integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),  -- the task attempt that produced it
    agent       text CHECK (agent IS NULL OR length(agent) <= 200),
    -- the task's result, bounded by the caller (a summary when the result is too large)
    content     jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (octet_length(content::text) <= 262144),
    reference   text CHECK (reference IS NULL OR length(reference) <= 4096),  -- branch, commit, release, log
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (task_id, kind)
);
CREATE INDEX phase_gate_artifacts_ticket_idx ON phase_gate_artifacts (ticket_id, phase, id);

CREATE TABLE phase_gate_results (
    id            bigserial PRIMARY KEY,
    ticket_id     uuid NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    phase         text NOT NULL CHECK (btrim(phase) <> '' AND length(phase) <= 100),
    -- [{kind, name, passed, measured, expected, detail}, ...]
    criteria      jsonb NOT NULL CHECK (jsonb_typeof(criteria) = 'array'),
    verdict       text NOT NULL CHECK (verdict IN ('passed', 'failed', 'waiting')),
    evaluated_by  text NOT NULL CHECK (btrim(evaluated_by) <> '' AND length(evaluated_by) <= 100),
    evaluated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX phase_gate_results_ticket_idx ON phase_gate_results (ticket_id, id);


CREATE FUNCTION _gate_check_ticket(p_ticket_id uuid) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_ticket_id IS NULL THEN
        PERFORM _ticket_invalid('ticket_id', 'must not be null');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM tickets WHERE id = p_ticket_id) THEN
        RAISE EXCEPTION USING ERRCODE = 'DT404', COLUMN = 'ticket_id',
            MESSAGE = format('no ticket %s', p_ticket_id), DETAIL = format('ticket_id=%s', p_ticket_id);
    END IF;
END;
$$;

-- Record what tasks of one phase visit produced. p_artifacts is a JSON array of
--   {kind, task_id, attempt, agent, content, reference}
-- (task_id required: it is what makes recording idempotent; the task must be the ticket's). The
-- task's key is taken from its row. Returns the stored row of every element, in order: the new one,
-- the one already there for the same (task, kind), or the replaced one when the element comes from
-- a later attempt than what was recorded.
CREATE FUNCTION record_gate_artifacts(p_ticket_id uuid, p_phase text, p_artifacts jsonb)
RETURNS SETOF phase_gate_artifacts LANGUAGE plpgsql AS $$
DECLARE
    v_item jsonb;
    v_task tasks;
    v_kind text;
    v_attempt integer;
    v_row phase_gate_artifacts;
BEGIN
    PERFORM _gate_check_ticket(p_ticket_id);
    PERFORM _ticket_check_text('phase', p_phase, 100);
    IF p_artifacts IS NULL OR jsonb_typeof(p_artifacts) <> 'array' OR jsonb_array_length(p_artifacts) > 500 THEN
        PERFORM _ticket_invalid('artifacts', 'must be a JSON array of at most 500 artifacts');
    END IF;
    FOR v_item IN SELECT value FROM jsonb_array_elements(p_artifacts) LOOP
        IF jsonb_typeof(v_item) <> 'object' THEN
            PERFORM _ticket_invalid('artifacts', 'every artifact must be a JSON object');
        END IF;
        v_kind := v_item ->> 'kind';
        IF v_kind IS NULL OR v_kind NOT IN ('branch', 'test_report', 'review', 'deployment', 'document', 'build', 'plan') THEN
            PERFORM _ticket_invalid('kind', format(
                '%L is not one of branch, test_report, review, deployment, document, build, plan', v_kind));
        END IF;
        IF jsonb_typeof(v_item -> 'task_id') IS DISTINCT FROM 'string'
           OR (v_item ->> 'task_id') !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
            PERFORM _ticket_invalid('task_id', format('%s is not a task id', coalesce(v_item -> 'task_id', 'null'::jsonb)));
        END IF;
        SELECT * INTO v_task FROM tasks WHERE id = (v_item ->> 'task_id')::uuid AND ticket_id = p_ticket_id;
        IF NOT FOUND THEN
            PERFORM _ticket_invalid('task_id', format('no task %s of ticket %s', v_item ->> 'task_id', p_ticket_id));
        END IF;
        v_attempt := v_task.attempt;
        IF jsonb_typeof(v_item -> 'attempt') IS DISTINCT FROM 'null' AND v_item ? 'attempt' THEN
            -- nested, not OR-ed: SQL does not promise to test the type before the cast
            IF jsonb_typeof(v_item -> 'attempt') <> 'number' THEN
                PERFORM _ticket_invalid('attempt', format('must be a number (got %s)', v_item -> 'attempt'));
            END IF;
            IF (v_item ->> 'attempt')::numeric NOT BETWEEN 0 AND 2147483647
               OR (v_item ->> 'attempt')::numeric <> trunc((v_item ->> 'attempt')::numeric) THEN
                PERFORM _ticket_invalid('attempt', format('must be a non-negative integer (got %s)', v_item -> 'attempt'));
            END IF;
            v_attempt := (v_item ->> 'attempt')::integer;
        END IF;
        IF jsonb_typeof(v_item -> 'agent') NOT IN ('string', 'null') OR length(v_item ->> 'agent') > 200 THEN
            PERFORM _ticket_invalid('agent', 'must be a string of at most 200 characters or null');
        END IF;
        IF jsonb_typeof(v_item -> 'reference') NOT IN ('string', 'null') OR length(v_item ->> 'reference') > 4096 THEN
            PERFORM _ticket_invalid('reference', 'must be a string of at most 4096 characters or null');
        END IF;
        IF octet_length(coalesce(v_item -> 'content', '{}'::jsonb)::text) > 262144 THEN
            PERFORM _ticket_invalid('content', format('at most 256 KiB of JSON (got %s bytes)',
                                                      octet_length((v_item -> 'content')::text)));
        END IF;

        INSERT INTO phase_gate_artifacts AS a (ticket_id, phase, kind, task_id, task_key, attempt, agent,
                                               content, reference)
        VALUES (p_ticket_id, p_phase, v_kind, v_task.id, v_task.key, v_attempt,
                coalesce(v_item ->> 'agent', v_task.assigned_agent),
                coalesce(v_item -> 'content', '{}'::jsonb), v_item ->> 'reference')
        ON CONFLICT (task_id, kind) DO UPDATE
            SET phase = EXCLUDED.phase, attempt = EXCLUDED.attempt, agent = EXCLUDED.agent,
                content = EXCLUDED.content, reference = EXCLUDED.reference, created_at = now()
            WHERE a.attempt < EXCLUDED.attempt
        RETURNING * INTO v_row;
        IF v_row.id IS NULL THEN  -- recorded before by the same or a later attempt: keep that one
            SELECT * INTO v_row FROM phase_gate_artifacts WHERE task_id = v_task.id AND kind = v_kind;
        END IF;
        RETURN NEXT v_row;
        v_row := NULL;
    END LOOP;
END;
$$;

-- Record one evaluation of a gate. p_criteria: a JSON array (at most 100) of objects with a string
-- `kind` and `name`, `passed` true/false/null, and optional measured, expected, detail. The verdict
-- must agree with them, so a row never says "passed" over a failed criterion: passed = every
-- criterion passed; failed = at least one failed; waiting = none failed and at least one undecided.
CREATE FUNCTION record_gate_result(
    p_ticket_id uuid, p_phase text, p_criteria jsonb, p_verdict text, p_evaluated_by text
) RETURNS SETOF phase_gate_results LANGUAGE plpgsql AS $$
DECLARE
    v_item jsonb;
    v_failed integer := 0;
    v_undecided integer := 0;
    v_expected text;
BEGIN
    PERFORM _gate_check_ticket(p_ticket_id);
    PERFORM _ticket_check_text('phase', p_phase, 100);
    PERFORM _ticket_check_text('evaluated_by', p_evaluated_by, 100);
    IF p_verdict IS NULL OR p_verdict NOT IN ('passed', 'failed', 'waiting') THEN
        PERFORM _ticket_invalid('verdict', format('%L is not one of passed, failed, waiting', p_verdict));
    END IF;
    IF p_criteria IS NULL OR jsonb_typeof(p_criteria) <> 'array' OR jsonb_array_length(p_criteria) > 100 THEN
        PERFORM _ticket_invalid('criteria', 'must be a JSON array of at most 100 criteria');
    END IF;
    IF octet_length(p_criteria::text) > 1048576 THEN
        PERFORM _ticket_invalid('criteria', format('at most 1 MiB of JSON (got %s bytes)', octet_length(p_criteria::text)));
    END IF;
    FOR v_item IN SELECT value FROM jsonb_array_elements(p_criteria) LOOP
        IF jsonb_typeof(v_item) <> 'object'
           OR jsonb_typeof(v_item -> 'kind') IS DISTINCT FROM 'string'
           OR jsonb_typeof(v_item -> 'name') IS DISTINCT FROM 'string'
           OR coalesce(jsonb_typeof(v_item -> 'passed'), 'null') NOT IN ('boolean', 'null') THEN
            PERFORM _ticket_invalid('criteria', format(
                'every criterion is an object with a string kind and name and passed true, false or null (got %s)',
                left(v_item::text, 200)));
        END IF;
        IF v_item -> 'passed' = 'false'::jsonb THEN
            v_failed := v_failed + 1;
        ELSIF coalesce(jsonb_typeof(v_item -> 'passed'), 'null') = 'null' THEN
            v_undecided := v_undecided + 1;
        END IF;
    END LOOP;
    v_expected := CASE WHEN v_failed > 0 THEN 'failed' WHEN v_undecided > 0 THEN 'waiting' ELSE 'passed' END;
    IF p_verdict <> v_expected THEN
        PERFORM _ticket_invalid('verdict', format(
            'verdict %L disagrees with the criteria (%s failed, %s undecided: %s)',
            p_verdict, v_failed, v_undecided, v_expected));
    END IF;

    RETURN QUERY
    INSERT INTO phase_gate_results (ticket_id, phase, criteria, verdict, evaluated_by)
    VALUES (p_ticket_id, p_phase, p_criteria, p_verdict, p_evaluated_by)
    RETURNING *;
END;
$$;
