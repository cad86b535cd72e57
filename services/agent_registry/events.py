"""Registry facts published on the bus as `agent.status_change` events.

The protocol has one event type for agent lifecycle facts, so the payload's
``change`` says which: ``registered``, ``capabilities_changed``, ``status``
(with ``previous_status``/``status``) or ``deregistered``.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import Counter

from shared.bus import InterAgentEvent, InterAgentEventType

log = logging.getLogger(__name__)

REGISTRY_AGENT_ID = "agent-registry"
EVENTS_PUBLISHED = Counter(
    "devtools_registry_events_published_total", "Registry events published on the bus", ["change"]
)
EVENTS_FAILED = Counter(
    "devtools_registry_events_failed_total", "Registry events that could not be published", ["change"]
)


class RegistryEvents:
    """Publishes lifecycle facts; a bus outage is logged and counted, never fails the HTTP call."""

    def __init__(self, bus: Any | None) -> None:
        self.bus = bus

    async def publish(self, change: str, agent_id: str, **payload: Any) -> None:
        if self.bus is None:
            return
        event = InterAgentEvent(
            event_type=InterAgentEventType.AGENT_STATUS_CHANGE,
            source_agent=REGISTRY_AGENT_ID,
            payload={"change": change, "agent_id": agent_id, **payload},
        )
        try:
            await self.bus.emit(event)
            EVENTS_PUBLISHED.labels(change).inc()
        except Exception as exc:  # the bus is best-effort for the registry; the DB is the truth
            EVENTS_FAILED.labels(change).inc()
            log.warning("could not publish registry event", extra={"change": change, "error": str(exc)})

    async def status_changed(self, agent_id: str, previous: str | None, status: str, reason: str) -> None:
        if previous != status:
            await self.publish("status", agent_id, previous_status=previous, status=status, reason=reason)
