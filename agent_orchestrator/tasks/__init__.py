"""Tasks: the units of a ticket's phase that agents pick up, with a dependency DAG, retries with
backoff, leases fenced by attempt, cancellation. The rules live in SQL (config/state/080_tasks.sql);
`TaskStore` wraps the procedures, `dag` and `backoff` are the Python-side checks and delays."""

from agent_orchestrator.tasks.backoff import DEFAULT_BACKOFF, Backoff
from agent_orchestrator.tasks.dag import find_cycle, validate_batch
from agent_orchestrator.tasks.errors import (
    DependencyError,
    TaskArgumentError,
    TaskError,
    TaskNotFound,
    task_error_from,
)
from agent_orchestrator.tasks.models import (
    FINAL_STATUSES,
    AgentLoad,
    AssignOutcome,
    ErrorClass,
    ErrorKind,
    PhaseSummary,
    Task,
    TaskSpec,
    TaskStatus,
)
from agent_orchestrator.tasks.plans import resolve_bindings, specs_from_plan
from agent_orchestrator.tasks.store import TASK_UPDATES_CHANNEL, TASKS_CHANNEL, TaskStore

__all__ = [
    "DEFAULT_BACKOFF",
    "FINAL_STATUSES",
    "TASKS_CHANNEL",
    "TASK_UPDATES_CHANNEL",
    "AgentLoad",
    "AssignOutcome",
    "Backoff",
    "DependencyError",
    "ErrorClass",
    "ErrorKind",
    "PhaseSummary",
    "Task",
    "TaskArgumentError",
    "TaskError",
    "TaskNotFound",
    "TaskSpec",
    "TaskStatus",
    "TaskStore",
    "find_cycle",
    "resolve_bindings",
    "specs_from_plan",
    "task_error_from",
    "validate_batch",
]
