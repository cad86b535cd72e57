"""Tickets: work a person files, moved through the phases a phase file declares.

`TicketStore` is the entry point (create, get, list, update with optimistic locking, phase
transitions checked against the `PhaseMachine`, history, context, run). `load_phase_machine`
reads `config/phases/<name>.yaml`; a machine's `tasks_for(phase, template_variables(ticket))`
renders the tasks a phase generates. Modules: `models`, `errors`, `variables` (placeholders),
`machine` (the state machine and task templates), `phases` (loading and validation), `store`
(over config/state/070_tickets.sql), `lifecycle` (opening and cancelling a ticket with its durable
run, and the waker that resumes the run when its phase's tasks are done), `context` (a phase's task
results aggregated into sections, and the bounded summary the next phase gets; `context_sections`
reads each agent's result), `gates` (a phase's exit criteria: the `gate:` block of a phase file,
measures read from task results, artifacts, evaluation and on_fail, and the store over
config/state/090_gates.sql).
"""

from agent_orchestrator.tickets.context import (
    CONTEXT_KEY_PATTERN,
    NOTES_KEY,
    RESERVED_KEYS,
    SECTIONS_KEY,
    SUMMARY_KEY,
    aggregate_phase,
    context_update_for_phase,
    merge_phase,
    summarize,
    summary_chat_model,
)
from agent_orchestrator.tickets.errors import (
    PhaseFileError,
    StaleVersion,
    TicketArgumentError,
    TicketError,
    TicketNotFound,
    TransitionRefused,
    VariableError,
    ticket_error_from,
)
from agent_orchestrator.tickets.gates import (
    Approval,
    Gate,
    GateArtifact,
    GateDecision,
    GateResult,
    GateResultRecord,
    GateStore,
    MeasureError,
)
from agent_orchestrator.tickets.lifecycle import (
    TICKET_WORKFLOW,
    WAITING_FOR_APPROVAL,
    WAITING_FOR_PERSON,
    WAITING_FOR_TASKS,
    TicketWaker,
    cancel_ticket,
    open_ticket,
    phase_label,
    start_ticket_run,
    waiting_for,
)
from agent_orchestrator.tickets.machine import Phase, PhaseMachine, TaskTemplate
from agent_orchestrator.tickets.models import (
    MAX_LIST_LIMIT,
    MAX_LIST_OFFSET,
    PHASE_NAME_PATTERN,
    PhaseHistoryEntry,
    PhaseTransition,
    Priority,
    RepoRef,
    Ticket,
    TicketCreate,
    TicketQuery,
    TicketStatus,
    TicketUpdate,
)
from agent_orchestrator.tickets.phases import (
    PHASES_DIR,
    load_phase_file,
    load_phase_machine,
    phase_file_names,
)
from agent_orchestrator.tickets.store import TicketStore
from agent_orchestrator.tickets.variables import resolve, template_variables

__all__ = [
    "CONTEXT_KEY_PATTERN",
    "MAX_LIST_LIMIT",
    "MAX_LIST_OFFSET",
    "NOTES_KEY",
    "PHASES_DIR",
    "PHASE_NAME_PATTERN",
    "RESERVED_KEYS",
    "SECTIONS_KEY",
    "SUMMARY_KEY",
    "TICKET_WORKFLOW",
    "WAITING_FOR_APPROVAL",
    "WAITING_FOR_PERSON",
    "WAITING_FOR_TASKS",
    "Approval",
    "Gate",
    "GateArtifact",
    "GateDecision",
    "GateResult",
    "GateResultRecord",
    "GateStore",
    "MeasureError",
    "Phase",
    "PhaseFileError",
    "PhaseHistoryEntry",
    "PhaseMachine",
    "PhaseTransition",
    "Priority",
    "RepoRef",
    "StaleVersion",
    "TaskTemplate",
    "Ticket",
    "TicketArgumentError",
    "TicketCreate",
    "TicketError",
    "TicketNotFound",
    "TicketQuery",
    "TicketStatus",
    "TicketStore",
    "TicketUpdate",
    "TicketWaker",
    "TransitionRefused",
    "VariableError",
    "aggregate_phase",
    "cancel_ticket",
    "context_update_for_phase",
    "load_phase_file",
    "load_phase_machine",
    "merge_phase",
    "open_ticket",
    "phase_file_names",
    "phase_label",
    "resolve",
    "start_ticket_run",
    "summarize",
    "summary_chat_model",
    "template_variables",
    "ticket_error_from",
    "waiting_for",
]
