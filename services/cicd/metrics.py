"""Prometheus metrics of the cicd agent (names are stable: dashboards use them)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

PIPELINE_RUNS = Counter("devtools_cicd_pipeline_runs_total", "RUN_PIPELINE executions by outcome", ["status"])
PIPELINE_DURATION = Histogram(
    "devtools_cicd_pipeline_duration_seconds",
    "Wall time of the repository's test command",
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
)
BUILDS = Counter("devtools_cicd_builds_total", "VALIDATE_BUILD executions by outcome", ["status"])
ARTIFACTS_STORED = Counter(
    "devtools_cicd_artifacts_stored_total", "Artifacts handed to the store", ["outcome"]
)  # outcome: new | deduplicated
