"""The orchestrator service (port 8001): see `agent_orchestrator.service`."""
