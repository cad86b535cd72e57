"""What makes a process an agent: its declaration, the service that runs it, the registry client.

- `AgentDefinition` (with `Capability` and handlers taking a `RequestContext`): what an agent does;
- `AgentService` / `run_agent`: the process that serves it over HTTP (`POST /agent-request`) and
  the bus, registers it and heartbeats;
- `RegistryClient`: register, heartbeat and discover agents in the agent registry.
"""

from shared.agents.registry_client import (
    AgentRegistration,
    RegistryClient,
    RegistryError,
    RegistryUnavailable,
)
from shared.agents.runtime import AgentDefinition, Capability, RequestContext, RequestRejected
from shared.agents.service import AgentService, AgentServiceSettings, run_agent
from shared.bus import AgentError, PermanentAgentError, RetryableAgentError

__all__ = [
    "AgentDefinition",
    "AgentError",
    "AgentRegistration",
    "AgentService",
    "AgentServiceSettings",
    "Capability",
    "PermanentAgentError",
    "RegistryClient",
    "RegistryError",
    "RegistryUnavailable",
    "RequestContext",
    "RequestRejected",
    "RetryableAgentError",
    "run_agent",
]
