"""Names of every Redis key the event bus uses, and the wire encoding of stream entries.

All keys start with f"{prefix}:bus:" so that one Redis can host several deployments.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.bus.events import ANY_AGENT, PRIORITY_ORDER, AgentRequestEvent, RequestPriority

# Every stream entry the bus writes carries one field holding the JSON document.
DATA_FIELD = "data"
# The consumer group reading request streams: all replicas of an agent (or all agents with a
# capability) share it, so each request is handled by one of them.
REQUEST_GROUP = "workers"


@dataclass(frozen=True)
class BusKeys:
    prefix: str

    @property
    def root(self) -> str:
        return f"{self.prefix}:bus"

    @property
    def events(self) -> str:
        """The durable broadcast stream (trimmed by length)."""
        return f"{self.root}:events"

    @property
    def dead_letters(self) -> str:
        return f"{self.root}:dead"

    def request_stream(self, target: str, priority: RequestPriority) -> str:
        """target is 'agent:<id>' or 'cap:<capability>'; one stream per priority lane."""
        return f"{self.root}:req:{target}:{priority.value}"

    def inbox(self, agent_id: str, instance: str) -> str:
        """Where responses to one EventBus instance's requests are written."""
        return f"{self.root}:inbox:{agent_id}:{instance}"

    def presence(self, target: str) -> str:
        """Exists while some consumer serving `target` is alive (each refreshes it, with a TTL)."""
        return f"{self.root}:presence:{target}"

    def result(self, request_id: str) -> str:
        """The first response to a request, kept so a redelivery is answered without re-running."""
        return f"{self.root}:result:{request_id}"


def agent_target(agent_id: str) -> str:
    return f"agent:{agent_id}"


def capability_target(capability: str) -> str:
    return f"cap:{capability}"


def request_target(event: AgentRequestEvent) -> str:
    if event.target_agent == ANY_AGENT:
        assert event.required_capability is not None  # enforced by the model
        return capability_target(event.required_capability)
    return agent_target(event.target_agent)


def lanes(keys: BusKeys, targets: list[str]) -> list[list[str]]:
    """Request streams grouped by priority lane, most urgent lane first."""
    return [[keys.request_stream(target, priority) for target in targets] for priority in PRIORITY_ORDER]


def priority_of_stream(stream: str) -> RequestPriority:
    return RequestPriority(stream.rsplit(":", 1)[1])


def priority_rank(priority: RequestPriority) -> int:
    return PRIORITY_ORDER.index(priority)
