"""Prometheus metrics of the resource lock layer (names are stable: dashboards depend on them).

Labels carry the resource *kind* (the part before ':' in `env:staging`), never the full id, so the
cardinality stays bounded however many resources exist.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_HOLD_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)

LOCK_ACQUISITIONS = Counter("devtools_lock_acquisitions_total", "Leases obtained.", ["resource_kind", "mode"])
LOCK_CONTENTIONS = Counter(
    "devtools_lock_contentions_total",
    "Acquisitions that found the resource held and had to wait.",
    ["resource_kind"],
)
LOCK_TIMEOUTS = Counter(
    "devtools_lock_timeouts_total", "Acquisitions that gave up after wait_timeout.", ["resource_kind"]
)
LOCK_RENEWAL_FAILURES = Counter(
    "devtools_lock_renewal_failures_total",
    "Lease renewals that failed (errors or lost leases).",
    ["resource_kind"],
)
LOCK_LEASES_LOST = Counter(
    "devtools_lock_leases_lost_total", "Leases lost while held (not renewed in time).", ["resource_kind"]
)
LOCK_WAIT_SECONDS = Histogram(
    "devtools_lock_wait_seconds",
    "Time from asking for a lock until holding it.",
    ["resource_kind"],
    buckets=_LATENCY_BUCKETS,
)
LOCK_HOLD_SECONDS = Histogram(
    "devtools_lock_hold_seconds", "Time a lease was held.", ["resource_kind"], buckets=_HOLD_BUCKETS
)
LOCK_ACTIVE = Gauge(
    "devtools_lock_active_leases", "Leases currently held by this process.", ["resource_kind"]
)


def resource_kind(resource_id: str) -> str:
    kind, sep, _ = resource_id.partition(":")
    return kind if sep else "other"
