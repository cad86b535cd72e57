"""Tickets: work a person files, moved through the phases a phase file declares.

`TicketStore` is the entry point (create, get, list, update with optimistic locking, phase
transitions checked against the `PhaseMachine`, history, context, run). `load_phase_machine`
reads `config/phases/<name>.yaml`; a machine's `tasks_for(phase, template_variables(ticket))`
renders the tasks a phase generates. Modules: `models`, `errors`, `variables` (placeholders),
`machine` (the state machine and task templates), `phases` (loading and validation), `store`
(over config/state/070_tickets.sql), `lifecycle` (opening and cancelling a ticket with its durable
run, and the waker that resumes the run when its phase's tasks are done).
"""

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
from agent_orchestrator.tickets.lifecycle import (
    TICKET_WORKFLOW,
    WAITING_FOR_PERSON,
    WAITING_FOR_TASKS,
    TicketWaker,
    cancel_ticket,
    open_ticket,
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
    "MAX_LIST_LIMIT",
    "MAX_LIST_OFFSET",
    "PHASES_DIR",
    "PHASE_NAME_PATTERN",
    "TICKET_WORKFLOW",
    "WAITING_FOR_PERSON",
    "WAITING_FOR_TASKS",
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
    "cancel_ticket",
    "load_phase_file",
    "load_phase_machine",
    "open_ticket",
    "phase_file_names",
    "resolve",
    "start_ticket_run",
    "template_variables",
    "ticket_error_from",
    "waiting_for",
]
