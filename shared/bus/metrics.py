"""Prometheus metrics of the event bus (module-level: several EventBus instances share them)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)

EVENTS_EMITTED = Counter(
    "devtools_bus_events_emitted_total", "Broadcast events written to the events stream", ["event_type"]
)
EVENTS_DELIVERED = Counter(
    "devtools_bus_events_delivered_total", "Broadcast events handled by a subscriber", ["group"]
)
SUBSCRIBER_ERRORS = Counter(
    "devtools_bus_subscriber_errors_total", "Subscriber handler failures (the event is retried)", ["group"]
)
REQUEST_LATENCY = Histogram(
    "devtools_bus_request_latency_seconds",
    "Time from sending a request to receiving its response, by requester",
    ["agent", "status"],
    buckets=LATENCY_BUCKETS,
)
ACTIVE_REQUESTS = Gauge(
    "devtools_bus_active_requests", "Requests sent and still awaiting a response", ["agent"]
)
REQUEST_TIMEOUTS = Counter(
    "devtools_bus_request_timeouts_total", "Requests that got no response in time", ["agent"]
)
REQUESTS_RESENT = Counter(
    "devtools_bus_requests_resent_total",
    "Requests sent again because Redis lost them (restart without persistence, stream deleted)",
    ["agent"],
)
REQUESTS_UNROUTABLE = Counter(
    "devtools_bus_requests_unroutable_total",
    "Requests answered `rejected` at once because no live consumer serves their target",
    ["agent"],
)
REQUESTS_HANDLED = Counter(
    "devtools_bus_requests_handled_total", "Requests answered by a consumer", ["agent", "status"]
)
HANDLERS_ACTIVE = Gauge("devtools_bus_handlers_active", "Requests being executed by consumers", ["agent"])
REDELIVERIES = Counter(
    "devtools_bus_redeliveries_total",
    "Entries reclaimed from a silent consumer and delivered again",
    ["kind"],
)
DEAD_LETTERS = Counter(
    "devtools_bus_dead_letters_total", "Entries moved to the dead-letter stream", ["reason"]
)
UNAVAILABLE = Counter(
    "devtools_bus_unavailable_total", "Publishes that failed after bounded retries", ["operation"]
)
LISTENER_RECONNECTS = Counter(
    "devtools_bus_listener_reconnects_total", "Listener loops that lost Redis and reconnected", ["kind"]
)
