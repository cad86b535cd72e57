"""The agent-registry service: agents register, heartbeat and are found by capability."""
