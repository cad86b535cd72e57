"""The orchestrator's HTTP API: runs, approvals, history and replay."""
