-- Context passing between a ticket's phases (docs/TICKETS_AND_TASKS.md, "Context"): set and remove
-- several keys of `tickets.context` in one statement, under the ticket's row lock and version, so a
-- phase's results, its aggregated sections and the summary land together (or not at all), and a
-- person's edit made from a stale read is refused with 'DT409' naming the current version.
--
-- Keys starting with '_' are reserved for the platform (`_sections`, `_summary`): task keys and a
-- person's keys never start with one, so the two cannot collide. Only a caller that says so
-- (p_allow_reserved, the ticket workflow) may write or remove them.
--
-- Errors as in 070_tickets.sql: 'DT001' invalid argument (COLUMN names it: 'set.<key>',
-- 'remove[<i>]', 'set', 'remove'), 'DT404' unknown ticket, 'DT409' stale version.

-- One key of the context: the placeholder grammar's segment (no '.'), bounded, maybe reserved.
CREATE FUNCTION _ticket_check_context_key(p_argument text, p_key text, p_allow_reserved boolean)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_key IS NULL OR p_key !~ '^[A-Za-z_][A-Za-z0-9_-]{0,99}$' THEN
        PERFORM _ticket_invalid(p_argument,
            format('%L is not a context key ([A-Za-z_][A-Za-z0-9_-]*, at most 100)', p_key));
    END IF;
    IF NOT p_allow_reserved AND left(p_key, 1) = '_' THEN
        PERFORM _ticket_invalid(p_argument,
            format('%L is reserved: keys starting with ''_'' are written by the platform', p_key));
    END IF;
END;
$$;

-- context = (context - p_remove) || p_set, one version bump. Every key to remove must be in the
-- context (checked after the version, so a typo is named rather than passing as a no-op); a key
-- is either set or removed, not both.
CREATE FUNCTION update_ticket_context(
    p_id uuid, p_expected_version bigint, p_set jsonb DEFAULT '{}'::jsonb, p_remove text[] DEFAULT '{}',
    p_allow_reserved boolean DEFAULT false
) RETURNS SETOF tickets LANGUAGE plpgsql AS $$
DECLARE
    v_ticket tickets;
    v_key text;
    v_size bigint;
    v_context jsonb;
BEGIN
    PERFORM _ticket_check_version(p_expected_version, false);
    IF p_set IS NULL OR jsonb_typeof(p_set) <> 'object' THEN
        PERFORM _ticket_invalid('set', 'must be a JSON object');
    END IF;
    IF p_remove IS NULL THEN
        PERFORM _ticket_invalid('remove', 'must not be null');
    END IF;
    IF p_set = '{}'::jsonb AND cardinality(p_remove) = 0 THEN
        PERFORM _ticket_invalid('set', 'nothing to change: give keys to set or to remove');
    END IF;
    -- Bounds, so one call cannot rewrite an unbounded number of keys.
    IF (SELECT count(*) FROM jsonb_object_keys(p_set)) > 500 THEN
        PERFORM _ticket_invalid('set', 'at most 500 keys per call');
    END IF;
    IF cardinality(p_remove) > 500 THEN
        PERFORM _ticket_invalid('remove', 'at most 500 keys per call');
    END IF;
    FOR v_key IN SELECT jsonb_object_keys(p_set) LOOP
        PERFORM _ticket_check_context_key('set.' || v_key, v_key, p_allow_reserved);
        v_size := octet_length((p_set -> v_key)::text);
        -- The bound of merge_ticket_context: one runaway value cannot bloat every later read.
        IF v_size > 8388608 THEN
            PERFORM _ticket_invalid('set.' || v_key, format('at most 8 MiB of JSON (got %s bytes)', v_size));
        END IF;
    END LOOP;
    FOR i IN 1 .. coalesce(cardinality(p_remove), 0) LOOP
        PERFORM _ticket_check_context_key(format('remove[%s]', i - 1), p_remove[i], p_allow_reserved);
        IF p_set ? p_remove[i] THEN
            PERFORM _ticket_invalid(format('remove[%s]', i - 1),
                format('%L is also in set: a key is either set or removed', p_remove[i]));
        END IF;
    END LOOP;

    v_ticket := _ticket_lock(p_id, p_expected_version);
    FOR i IN 1 .. coalesce(cardinality(p_remove), 0) LOOP
        IF NOT v_ticket.context ? p_remove[i] THEN
            PERFORM _ticket_invalid(format('remove[%s]', i - 1),
                format('%L is not in the context of ticket %s', p_remove[i], p_id));
        END IF;
    END LOOP;
    v_context := (v_ticket.context - p_remove) || p_set;
    v_size := octet_length(v_context::text);
    IF v_size > 67108864 THEN
        PERFORM _ticket_invalid('set', format('the context would hold %s bytes, more than 64 MiB', v_size));
    END IF;
    RETURN QUERY
    UPDATE tickets t SET
        context = v_context,
        version = t.version + 1,
        updated_at = now()
    WHERE t.id = p_id
    RETURNING t.*;
END;
$$;
