"""The event bus: request/response between agents and broadcast events, over Redis Streams.

`EventBus` is the facade every process uses; the event models are the wire contract
(`docs/EVENT_PROTOCOL.md`). Modules: `events` (models), `errors` (agent errors with a class),
`keys` (stream names), `connection` (Redis client, retries, dead letters), `requests` (waiting for
replies), `replies`, `consumer`, `execute`, `rejects`, `broadcast`, `batch`, `metrics`.
"""

from shared.bus.broadcast import ALL_RETAINED, NEW_EVENTS, EventHandler, Subscription
from shared.bus.connection import TRANSIENT_ERRORS, Backoff, BusOptions, BusUnavailable, RetryPolicy
from shared.bus.consumer import RequestConsumer
from shared.bus.errors import AgentError, ErrorInfo, PermanentAgentError, RetryableAgentError, classify
from shared.bus.event_bus import BusStats, EventBus
from shared.bus.events import (
    ANY_AGENT,
    PRIORITY_ORDER,
    AgentRequestEvent,
    AgentResponseEvent,
    ErrorClass,
    InterAgentEvent,
    InterAgentEventType,
    RequestPriority,
    ResponseStatus,
    new_id,
    utc_now,
)
from shared.bus.execute import RequestHandler
from shared.bus.keys import DATA_FIELD, REQUEST_GROUP, BusKeys, agent_target, capability_target, lanes

__all__ = [
    "ALL_RETAINED",
    "ANY_AGENT",
    "DATA_FIELD",
    "NEW_EVENTS",
    "PRIORITY_ORDER",
    "REQUEST_GROUP",
    "TRANSIENT_ERRORS",
    "AgentError",
    "AgentRequestEvent",
    "AgentResponseEvent",
    "Backoff",
    "BusKeys",
    "BusOptions",
    "BusStats",
    "BusUnavailable",
    "ErrorClass",
    "ErrorInfo",
    "EventBus",
    "EventHandler",
    "InterAgentEvent",
    "InterAgentEventType",
    "PermanentAgentError",
    "RequestConsumer",
    "RequestHandler",
    "RequestPriority",
    "ResponseStatus",
    "RetryPolicy",
    "RetryableAgentError",
    "Subscription",
    "agent_target",
    "capability_target",
    "classify",
    "lanes",
    "new_id",
    "utc_now",
]
