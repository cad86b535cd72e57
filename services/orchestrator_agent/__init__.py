"""The orchestrator's agent skills: decompose a task, route a request, aggregate results, report status."""
