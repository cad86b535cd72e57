"""Prometheus metrics of the run queue and its workers (names are stable)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RUNS_ENQUEUED = Counter("devtools_runs_enqueued_total", "Runs queued through the API", ["workflow"])
RUNS_CLAIMED = Counter("devtools_runs_claimed_total", "Runs claimed by a worker", ["workflow"])
RUNS_FINISHED = Counter(
    "devtools_runs_finished_total", "Run executions ended, by outcome", ["workflow", "outcome"]
)
RUN_EXECUTION_SECONDS = Histogram(
    "devtools_run_execution_seconds", "Wall time of one execution (claim to release) of a run", ["workflow"]
)
RUN_NODE_SECONDS = Histogram(
    "devtools_run_node_seconds", "Wall time of one graph node execution", ["workflow", "node"]
)
RUNS_IN_FLIGHT = Gauge("devtools_runs_in_flight", "Runs this process is executing now")
LEASES_LOST = Counter("devtools_run_leases_lost_total", "Executions stopped because the lease was lost")
