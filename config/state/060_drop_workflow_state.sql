-- The workflow_state tables and procedures (020) were never used by the platform: durable runs
-- (040) and LangGraph's checkpoints hold a workflow's state. Dropped rather than kept as dead schema;
-- tickets carry their own version column for optimistic locking.
DROP FUNCTION IF EXISTS cleanup_old_workflows(interval);
DROP FUNCTION IF EXISTS transition_workflow_status CASCADE;
DROP FUNCTION IF EXISTS restore_workflow_checkpoint CASCADE;
DROP FUNCTION IF EXISTS create_workflow_checkpoint CASCADE;
DROP FUNCTION IF EXISTS update_workflow_state CASCADE;
DROP FUNCTION IF EXISTS create_workflow_state CASCADE;
DROP FUNCTION IF EXISTS _workflow_not_found CASCADE;
DROP FUNCTION IF EXISTS _workflow_invalid CASCADE;
DROP TABLE IF EXISTS workflow_checkpoints;
DROP TABLE IF EXISTS workflow_status_transitions;
DROP TABLE IF EXISTS workflow_state;
