-- Collaboration (docs/COLLABORATION.md): threads about a ticket, a task, a run or a topic; their
-- messages, delivered to each agent participant at least once; handoffs of work from one agent or
-- person to a capability, an agent or a person.
--
-- Messages are ordered within a thread by id (one sequence; a thread's messages never interleave out
-- of order). A message posted twice with the same `client_key` is stored once: the platform's own
-- posts use deterministic keys (`review:<task>:finding:<n>`, `reply:<message>:<agent>`), so a
-- redelivered request or a crashed poster that tries again adds nothing.
--
-- Delivery: posting creates one `collab_deliveries` row per agent participant other than the
-- author. The orchestrator's deliverer claims due rows (SKIP LOCKED, pushing `not_before` ahead as a
-- lease), sends each over the bus under a request id of the message and the agent, and acknowledges
-- it with the agent's reply (if any) in one statement (`collab_ack_delivery`): a reply is posted once
-- even when the answer comes twice.
--
-- Handoffs move through: offered (to one agent, until `offer_deadline_at`) -> accepted | declined by
-- it (then the next best agent is offered it, the decliners excluded) -> awaiting_person (no agent
-- left, or `deadline_at` passed: a person, the ticket's owner, decides) -> accepted | declined.
-- Every transition names the state it leaves, so two orchestrators (or a person and an agent) racing
-- on one handoff change it once; the loser gets 'DT409'.
--
-- Errors: 'DT001' invalid argument (COLUMN names it), 'DT404' unknown thread/message/handoff,
-- 'DT409' the thread or handoff is not in a state that allows this.
-- NOTIFY: 'devtools_collab' (payload: thread id) on every message; 'devtools_handoffs' (payload:
-- handoff id) on every handoff change.

CREATE TABLE collab_threads (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    topic text NOT NULL CHECK (length(topic) BETWEEN 1 AND 300),
    ticket_id uuid REFERENCES tickets(id) ON DELETE CASCADE,
    task_id uuid REFERENCES tasks(id) ON DELETE SET NULL,
    run_id uuid,
    status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
    -- What opened it, for the platform's own threads (`review:<task id>`): one thread per origin.
    origin text UNIQUE CHECK (length(origin) <= 300),
    created_by text NOT NULL CHECK (length(created_by) BETWEEN 1 AND 200),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz,
    resolved_by text
);
CREATE INDEX collab_threads_ticket ON collab_threads (ticket_id, created_at) WHERE ticket_id IS NOT NULL;
CREATE INDEX collab_threads_run ON collab_threads (run_id, created_at) WHERE run_id IS NOT NULL;
CREATE INDEX collab_threads_recent ON collab_threads (updated_at DESC);

CREATE TABLE collab_participants (
    thread_id uuid NOT NULL REFERENCES collab_threads(id) ON DELETE CASCADE,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    kind text NOT NULL CHECK (kind IN ('agent', 'person')),
    joined_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (thread_id, name)
);

CREATE TABLE collab_messages (
    id bigserial PRIMARY KEY,
    thread_id uuid NOT NULL REFERENCES collab_threads(id) ON DELETE CASCADE,
    author text NOT NULL CHECK (length(author) BETWEEN 1 AND 200),
    author_kind text NOT NULL CHECK (author_kind IN ('agent', 'person')),
    kind text NOT NULL CHECK (kind IN ('comment', 'question', 'answer', 'finding', 'decision')),
    body text NOT NULL CHECK (length(body) BETWEEN 1 AND 20000),
    attachments jsonb NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(attachments) = 'array'),
    reply_to bigint REFERENCES collab_messages(id) ON DELETE SET NULL,
    client_key text CHECK (length(client_key) <= 300),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (thread_id, client_key)
);
CREATE INDEX collab_messages_thread ON collab_messages (thread_id, id);

CREATE TABLE collab_deliveries (
    message_id bigint NOT NULL REFERENCES collab_messages(id) ON DELETE CASCADE,
    agent text NOT NULL,
    attempts int NOT NULL DEFAULT 0,
    not_before timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz,
    last_error text,
    PRIMARY KEY (message_id, agent)
);
CREATE INDEX collab_deliveries_due ON collab_deliveries (not_before) WHERE delivered_at IS NULL;

CREATE TABLE collab_handoffs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    thread_id uuid NOT NULL REFERENCES collab_threads(id) ON DELETE CASCADE,
    ticket_id uuid REFERENCES tickets(id) ON DELETE CASCADE,
    task_id uuid REFERENCES tasks(id) ON DELETE SET NULL,
    from_name text NOT NULL CHECK (length(from_name) BETWEEN 1 AND 200),
    from_kind text NOT NULL CHECK (from_kind IN ('agent', 'person')),
    to_capability text CHECK (length(to_capability) BETWEEN 1 AND 100),
    to_agent text CHECK (length(to_agent) BETWEEN 1 AND 200),
    request_type text NOT NULL CHECK (length(request_type) BETWEEN 1 AND 100),
    reason text NOT NULL CHECK (length(reason) BETWEEN 1 AND 4000),
    context jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(context) = 'object'),
    person text NOT NULL CHECK (length(person) BETWEEN 1 AND 200),
    status text NOT NULL DEFAULT 'offered'
        CHECK (status IN ('offered', 'awaiting_person', 'accepted', 'declined')),
    offered_to text,
    offers int NOT NULL DEFAULT 0,
    offer_deadline_at timestamptz,
    declined_by jsonb NOT NULL DEFAULT '[]'::jsonb,
    timeout_seconds double precision NOT NULL CHECK (timeout_seconds BETWEEN 1 AND 604800),
    deadline_at timestamptz NOT NULL,
    accepted_by text,
    accepted_kind text CHECK (accepted_kind IN ('agent', 'person')),
    decided_by text,
    decision_comment text CHECK (length(decision_comment) <= 4000),
    follow_up_task_id uuid REFERENCES tasks(id) ON DELETE SET NULL,
    origin text UNIQUE CHECK (length(origin) <= 300),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    decided_at timestamptz,
    CHECK (to_capability IS NOT NULL OR to_agent IS NOT NULL)
);
CREATE INDEX collab_handoffs_open ON collab_handoffs (status, offer_deadline_at)
    WHERE status IN ('offered', 'awaiting_person');
CREATE INDEX collab_handoffs_ticket ON collab_handoffs (ticket_id, created_at) WHERE ticket_id IS NOT NULL;

CREATE FUNCTION _collab_fail(p_code text, p_argument text, p_message text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = p_code, COLUMN = coalesce(p_argument, ''), MESSAGE = p_message;
END;
$$;

-- Add a participant (no-op when present).
CREATE FUNCTION collab_join(p_thread uuid, p_name text, p_kind text) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO collab_participants (thread_id, name, kind) VALUES (p_thread, p_name, p_kind)
    ON CONFLICT (thread_id, name) DO NOTHING;
$$;

-- Post a message: stored once per (thread, client_key); delivered to every agent participant but the
-- author; the thread is touched and listeners woken. An existing message with the same key is
-- returned as it is (a retried post), without a second delivery.
CREATE FUNCTION collab_post_message(
    p_thread uuid, p_author text, p_author_kind text, p_kind text, p_body text,
    p_attachments jsonb, p_reply_to bigint, p_client_key text
) RETURNS SETOF collab_messages LANGUAGE plpgsql AS $$
DECLARE
    v_thread collab_threads;
    v_message collab_messages;
BEGIN
    SELECT * INTO v_thread FROM collab_threads WHERE id = p_thread FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM _collab_fail('DT404', 'thread', format('no thread %s', p_thread));
    END IF;
    IF p_client_key IS NOT NULL THEN
        SELECT * INTO v_message FROM collab_messages WHERE thread_id = p_thread AND client_key = p_client_key;
        IF FOUND THEN
            RETURN NEXT v_message;
            RETURN;
        END IF;
    END IF;
    IF v_thread.status <> 'open' THEN
        PERFORM _collab_fail('DT409', 'thread',
            format('thread %s is resolved: reopen it to post', p_thread));
    END IF;
    IF p_reply_to IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM collab_messages WHERE id = p_reply_to AND thread_id = p_thread
    ) THEN
        PERFORM _collab_fail('DT001', 'reply_to', format('message %s is not in thread %s', p_reply_to, p_thread));
    END IF;
    PERFORM collab_join(p_thread, p_author, p_author_kind);
    INSERT INTO collab_messages (thread_id, author, author_kind, kind, body, attachments, reply_to, client_key)
    VALUES (p_thread, p_author, p_author_kind, p_kind, p_body, coalesce(p_attachments, '[]'::jsonb),
            p_reply_to, p_client_key)
    RETURNING * INTO v_message;
    INSERT INTO collab_deliveries (message_id, agent)
    SELECT v_message.id, name FROM collab_participants
    WHERE thread_id = p_thread AND kind = 'agent' AND name <> p_author;
    UPDATE collab_threads SET updated_at = now() WHERE id = p_thread;
    PERFORM pg_notify('devtools_collab', p_thread::text);
    RETURN NEXT v_message;
END;
$$;

-- Claim up to p_limit due deliveries: each is leased for p_lease_seconds (its `not_before` moves
-- ahead), so a deliverer that dies leaves it to be sent again once the lease passes.
CREATE FUNCTION collab_claim_deliveries(p_limit int, p_lease_seconds double precision)
RETURNS TABLE (message_id bigint, agent text, attempts int) LANGUAGE sql AS $$
    WITH due AS (
        SELECT d.message_id, d.agent FROM collab_deliveries d
        WHERE d.delivered_at IS NULL AND d.not_before <= now()
        ORDER BY d.not_before, d.message_id
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE collab_deliveries d
    SET attempts = d.attempts + 1, not_before = now() + make_interval(secs => p_lease_seconds)
    FROM due WHERE d.message_id = due.message_id AND d.agent = due.agent
    RETURNING d.message_id, d.agent, d.attempts;
$$;

-- The agent acknowledged a message (its answer may carry a reply, posted here once: its key is the
-- message's and the agent's). False when it was acknowledged before.
CREATE FUNCTION collab_ack_delivery(
    p_message bigint, p_agent text, p_reply_kind text, p_reply_body text, p_reply_attachments jsonb
) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_thread uuid;
BEGIN
    UPDATE collab_deliveries SET delivered_at = now(), last_error = NULL
    WHERE message_id = p_message AND agent = p_agent AND delivered_at IS NULL;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF p_reply_body IS NOT NULL THEN
        SELECT thread_id INTO v_thread FROM collab_messages WHERE id = p_message;
        PERFORM collab_post_message(v_thread, p_agent, 'agent', coalesce(p_reply_kind, 'answer'), p_reply_body,
            coalesce(p_reply_attachments, '[]'::jsonb), p_message, format('reply:%s:%s', p_message, p_agent));
    END IF;
    RETURN true;
END;
$$;

-- A delivery that failed (agent unreachable, bus down): tried again after p_retry_seconds.
CREATE FUNCTION collab_delivery_failed(p_message bigint, p_agent text, p_error text, p_retry_seconds double precision)
RETURNS void LANGUAGE sql AS $$
    UPDATE collab_deliveries
    SET not_before = now() + make_interval(secs => p_retry_seconds), last_error = left(p_error, 2000)
    WHERE message_id = p_message AND agent = p_agent AND delivered_at IS NULL;
$$;

-- A transition that changed nothing: 'DT404' for an unknown handoff, else 'DT409' with why.
CREATE FUNCTION _collab_refuse_handoff(p_id uuid, p_why text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM collab_handoffs WHERE id = p_id) THEN
        PERFORM _collab_fail('DT404', 'handoff', format('no handoff %s', p_id));
    END IF;
    PERFORM _collab_fail('DT409', 'status', p_why);
END;
$$;

CREATE FUNCTION _collab_handoff_changed(v_handoff collab_handoffs) RETURNS void LANGUAGE sql AS $$
    SELECT pg_notify('devtools_handoffs', v_handoff.id::text);
$$;

-- Offer the handoff to p_agent until now() + p_offer_seconds (from offered, or a fresh handoff).
CREATE FUNCTION collab_offer_handoff(p_id uuid, p_agent text, p_offer_seconds double precision)
RETURNS SETOF collab_handoffs LANGUAGE plpgsql AS $$
DECLARE
    v collab_handoffs;
BEGIN
    UPDATE collab_handoffs SET offered_to = p_agent, offers = offers + 1,
        offer_deadline_at = least(deadline_at, now() + make_interval(secs => p_offer_seconds)),
        updated_at = now()
    WHERE id = p_id AND status = 'offered' AND offered_to IS NULL
    RETURNING * INTO v;
    IF NOT FOUND THEN
        PERFORM _collab_refuse_handoff(p_id, format('handoff %s is not waiting for an offer', p_id));
    END IF;
    PERFORM _collab_handoff_changed(v);
    RETURN NEXT v;
END;
$$;

-- The offered agent declined (or let the offer lapse): it joins the decliners, the offer is free.
CREATE FUNCTION collab_decline_offer(p_id uuid, p_agent text, p_reason text)
RETURNS SETOF collab_handoffs LANGUAGE plpgsql AS $$
DECLARE
    v collab_handoffs;
BEGIN
    UPDATE collab_handoffs SET offered_to = NULL, offer_deadline_at = NULL,
        declined_by = declined_by || jsonb_build_array(jsonb_build_object(
            'agent', p_agent, 'reason', left(coalesce(p_reason, ''), 1000), 'at', now())),
        updated_at = now()
    WHERE id = p_id AND status = 'offered' AND offered_to = p_agent
    RETURNING * INTO v;
    IF NOT FOUND THEN
        PERFORM _collab_refuse_handoff(p_id, format('handoff %s is not offered to %s', p_id, p_agent));
    END IF;
    PERFORM _collab_handoff_changed(v);
    RETURN NEXT v;
END;
$$;

-- No agent left to offer it to, or its deadline passed: a person decides.
CREATE FUNCTION collab_handoff_to_person(p_id uuid, p_why text)
RETURNS SETOF collab_handoffs LANGUAGE plpgsql AS $$
DECLARE
    v collab_handoffs;
BEGIN
    UPDATE collab_handoffs SET status = 'awaiting_person', offered_to = NULL, offer_deadline_at = NULL,
        decision_comment = left(p_why, 4000), updated_at = now()
    WHERE id = p_id AND status = 'offered'
    RETURNING * INTO v;
    IF NOT FOUND THEN
        PERFORM _collab_refuse_handoff(p_id, format('handoff %s is not offered to agents', p_id));
    END IF;
    PERFORM collab_join(v.thread_id, v.person, 'person');
    PERFORM _collab_handoff_changed(v);
    RETURN NEXT v;
END;
$$;

-- Accepted: by the agent it is offered to, or by a person while it awaits one (or while offered).
CREATE FUNCTION collab_accept_handoff(p_id uuid, p_by text, p_by_kind text, p_comment text)
RETURNS SETOF collab_handoffs LANGUAGE plpgsql AS $$
DECLARE
    v collab_handoffs;
BEGIN
    UPDATE collab_handoffs SET status = 'accepted', accepted_by = p_by, accepted_kind = p_by_kind, decided_by = p_by,
        decision_comment = coalesce(p_comment, decision_comment), decided_at = now(), updated_at = now(),
        offered_to = NULL, offer_deadline_at = NULL
    WHERE id = p_id AND (
        (status = 'offered' AND p_by_kind = 'agent' AND offered_to = p_by)
        OR (status IN ('offered', 'awaiting_person') AND p_by_kind = 'person')
    )
    RETURNING * INTO v;
    IF NOT FOUND THEN
        PERFORM _collab_refuse_handoff(p_id, format('handoff %s cannot be accepted by %s now', p_id, p_by));
    END IF;
    PERFORM collab_join(v.thread_id, p_by, p_by_kind);
    PERFORM _collab_handoff_changed(v);
    RETURN NEXT v;
END;
$$;

-- A person declines it: final (the work is not done; the thread says why).
CREATE FUNCTION collab_person_declines_handoff(p_id uuid, p_by text, p_comment text)
RETURNS SETOF collab_handoffs LANGUAGE plpgsql AS $$
DECLARE
    v collab_handoffs;
BEGIN
    UPDATE collab_handoffs SET status = 'declined', decided_by = p_by, decided_at = now(),
        decision_comment = p_comment, updated_at = now(), offered_to = NULL, offer_deadline_at = NULL
    WHERE id = p_id AND status IN ('offered', 'awaiting_person')
    RETURNING * INTO v;
    IF NOT FOUND THEN
        PERFORM _collab_refuse_handoff(p_id, format('handoff %s is already decided', p_id));
    END IF;
    PERFORM _collab_handoff_changed(v);
    RETURN NEXT v;
END;
$$;
