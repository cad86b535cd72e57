"""The orchestrator: workflows, run queue, HTTP API and the `devtools` CLI."""
