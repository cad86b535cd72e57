-- Foundation: a place for platform-wide facts. Later migrations add locks,
-- workflow state, the agent registry and the run queue.
CREATE TABLE IF NOT EXISTS platform_info (
    key        text PRIMARY KEY,
    value      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO platform_info (key, value)
VALUES ('schema_created_at', to_jsonb(now()))
ON CONFLICT (key) DO NOTHING;
