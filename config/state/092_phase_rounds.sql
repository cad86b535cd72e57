-- Rounds of a phase. A ticket sent back to an earlier phase by a failed gate (the feedback loop)
-- works that phase again with tasks of their own, created under the label `<PHASE>#<round>`
-- (`IMPLEMENTATION#2`); the first round's tasks keep the bare phase name. A return from a phase
-- that hands the ticket back where it was (BLOCKED: `return_to_previous` in the phase file, passed
-- here as p_resume_from) continues the same round: its tasks are the ones a person retried.
CREATE FUNCTION ticket_phase_label(p_ticket_id uuid, p_phase text, p_resume_from text[] DEFAULT '{}')
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN rounds <= 1 THEN p_phase ELSE p_phase || '#' || rounds END
    FROM (SELECT count(*) AS rounds FROM phase_history
          WHERE ticket_id = p_ticket_id AND to_phase = p_phase
            AND (from_phase IS NULL OR NOT from_phase = ANY (coalesce(p_resume_from, '{}')))) AS visits;
$$;
