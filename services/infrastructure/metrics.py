"""Prometheus metrics of the infrastructure agent (names are stable: dashboards use them)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

DEPLOYS = Counter(
    "devtools_infrastructure_deploys_total", "DEPLOY_SERVICE outcomes", ["target", "status"]
)  # status: deployed | rolled_back | failed
DEPLOY_DURATION = Histogram(
    "devtools_infrastructure_deploy_duration_seconds",
    "Time from deploy request to a healthy (or restored) release",
    ["target"],
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300),
)
ROLLBACKS = Counter(
    "devtools_infrastructure_rollbacks_total", "Releases restored", ["target", "trigger"]
)  # trigger: automatic | requested
HEALTH_CHECKS = Counter(
    "devtools_infrastructure_health_checks_total", "HEALTH_CHECK answers", ["target", "status"]
)
STALE_TOKENS = Counter(
    "devtools_infrastructure_stale_fencing_tokens_total", "Requests refused for a stale fencing token"
)
FENCING_REFUSALS = Counter(
    "devtools_infrastructure_fencing_refusals_total",
    "Mutating requests refused by the lock table check",
    ["reason"],
)  # reason: not_holder | locked | unavailable (stale tokens count in the counter above)
