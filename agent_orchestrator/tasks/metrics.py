"""Prometheus metrics of the task layer (dispatcher side; agents count their outcomes themselves)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

TASKS_DISPATCHED = Counter(
    "devtools_task_dispatched_total", "Tasks sent to an agent over the bus", ["capability"]
)
TASK_REASSIGNMENTS = Counter(
    "devtools_task_reassignments_total", "Tasks sent again after an earlier attempt was lost", ["capability"]
)
TASK_TIMEOUTS = Counter(
    "devtools_task_timeouts_total", "Task attempts that ran past their timeout", ["capability"]
)
TASKS_WAITING_FOR_AGENT = Counter(
    "devtools_task_no_agent_total",
    "Claimed tasks handed back because no agent had free capacity",
    ["capability"],
)
DISPATCH_LATENCY = Histogram(
    "devtools_task_dispatch_latency_seconds",
    "From a task becoming ready until it is sent to an agent",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TASKS_BY_STATUS = Gauge("devtools_task_tasks", "Tasks by status (sampled by the dispatcher)", ["status"])
READY_QUEUE_DEPTH = Gauge("devtools_task_ready_depth", "Ready tasks that are due and not yet claimed")
