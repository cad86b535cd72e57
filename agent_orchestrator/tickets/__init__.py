"""Tickets: work a person files, moved through the phases a phase file declares.

`TicketStore` is the entry point (create, get, list, update with optimistic locking, phase
transitions checked against the `PhaseMachine`, history, context, run). `load_phase_machine`
reads `config/phases/<name>.yaml`; a machine's `tasks_for(phase, template_variables(ticket))`
renders the tasks a phase generates. Modules: `models`, `errors`, `variables` (placeholders),
`machine` (the state machine and task templates), `phases` (loading and validation), `store`
(over config/state/070_tickets.sql).
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
from agent_orchestrator.tickets.machine import Phase, PhaseMachine, TaskTemplate
from agent_orchestrator.tickets.models import (
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
    "PHASES_DIR",
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
    "TransitionRefused",
    "VariableError",
    "load_phase_file",
    "load_phase_machine",
    "phase_file_names",
    "resolve",
    "template_variables",
    "ticket_error_from",
]
