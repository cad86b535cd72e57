"""The phase state machine a phase file declares: phases in order, their transitions and the
status each implies, the task templates each phase generates, and the gate each phase must pass.

Built (and validated) by `phases.load_phase_machine`; immutable afterwards, so one instance can be
shared by every ticket that uses the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent_orchestrator.coordination import CoordinationError
from agent_orchestrator.tasks import TaskArgumentError, TaskSpec, specs_from_plan
from agent_orchestrator.tickets.errors import TransitionRefused, VariableError
from agent_orchestrator.tickets.gates import BackTo, Gate
from agent_orchestrator.tickets.models import TicketStatus
from agent_orchestrator.tickets.phase_patterns import PhasePattern, pattern_plan
from agent_orchestrator.tickets.variables import resolve


@dataclass(frozen=True)
class TaskTemplate:
    """One task a phase generates; title, payload and locks may hold `{...}` placeholders."""

    key: str
    title: str
    capability: str
    request_type: str
    payload: dict[str, Any] = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()
    priority: int = 0
    timeout_seconds: float = 600.0
    max_attempts: int = 3
    locks: tuple[str, ...] = ()

    def render(self, variables: Mapping[str, Any], *, phase: str = "") -> TaskSpec:
        """Resolve the placeholders into the tasks layer's spec; VariableError names the placeholder,
        the task and the key."""
        where = f"phase {phase} task {self.key}" if phase else f"task {self.key}"
        return TaskSpec(
            key=self.key,
            title=resolve(self.title, variables, where=where, key="title"),
            capability=self.capability,
            request_type=self.request_type,
            payload=resolve(self.payload, variables, where=where, key="payload"),
            depends_on=list(self.depends_on),
            priority=self.priority,
            timeout_seconds=self.timeout_seconds,
            max_attempts=self.max_attempts,
            locks=[
                resolve(lock, variables, where=where, key=f"locks[{i}]") for i, lock in enumerate(self.locks)
            ],
        )


@dataclass(frozen=True)
class Phase:
    name: str
    status: TicketStatus
    description: str = ""
    next: tuple[str, ...] = ()
    # Whether the ticket may go back to the phase it entered this one from (how BLOCKED resumes).
    return_to_previous: bool = False
    tasks: tuple[TaskTemplate, ...] = ()
    # A task key of an earlier phase whose result (a DECOMPOSE_TASK plan) is this phase's tasks.
    expand: str | None = None
    # A coordination pattern applied by name: its tasks, joins and merges (tickets/phase_patterns.py).
    pattern: PhasePattern | None = None
    # What the phase must prove before the ticket leaves it (None: its tasks all succeeded is enough).
    gate: Gate | None = None

    @property
    def terminal(self) -> bool:
        return self.status.closed

    @property
    def back_to(self) -> str | None:
        """The earlier phase a failed gate sends the ticket back to, if the gate says so."""
        return self.gate.on_fail.phase if self.gate and isinstance(self.gate.on_fail, BackTo) else None


@dataclass(frozen=True)
class PhaseMachine:
    """Phases in declared order (the first is where tickets start) and what may follow what."""

    name: str
    file: str
    phases: tuple[Phase, ...]
    from_any_open: tuple[str, ...] = ()
    description: str = ""

    @property
    def initial(self) -> str:
        return self.phases[0].name

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.phases]

    @property
    def open_phases(self) -> list[str]:
        """Phases a ticket is still being worked in (not done or cancelled)."""
        return [p.name for p in self.phases if not p.terminal]

    def get(self, name: str) -> Phase | None:
        return next((p for p in self.phases if p.name == name), None)

    def phase(self, name: str) -> Phase:
        found = self.get(name)
        if found is None:
            raise KeyError(f"{self.file}: no phase {name!r} (declared: {', '.join(self.names)})")
        return found

    def status_of(self, name: str) -> TicketStatus:
        return self.phase(name).status

    def allowed(self, from_phase: str, previous: str | None = None) -> list[str]:
        """Where a ticket in `from_phase` may go: its declared `next`, the earlier phase its gate sends
        it back to on failure, the phase it came from when it may return there, then the phases
        reachable from any open phase. Never itself."""
        phase = self.get(from_phase)
        if phase is None or phase.terminal:
            return []
        targets = list(phase.next)
        if phase.back_to:
            targets.append(phase.back_to)
        if phase.return_to_previous and previous and self.get(previous) is not None:
            targets.append(previous)
        targets += self.from_any_open
        return [t for i, t in enumerate(targets) if t != from_phase and t not in targets[:i]]

    def check(self, from_phase: str, to_phase: str, previous: str | None = None) -> None:
        """Raise TransitionRefused (with the allowed list) unless from_phase -> to_phase is allowed."""
        allowed = self.allowed(from_phase, previous)
        if to_phase in allowed:
            return
        phase = self.get(from_phase)
        if phase is None:
            reason = f"the ticket's phase {from_phase!r} is not declared in {self.file}"
        elif phase.terminal:
            reason = f"{from_phase} is terminal (status {phase.status.value})"
        elif self.get(to_phase) is None:
            reason = f"unknown phase {to_phase!r} (declared: {', '.join(self.names)})"
        elif to_phase == from_phase:
            reason = f"the ticket is already in {from_phase}"
        else:
            reason = "not a declared transition"
        raise TransitionRefused(from_phase, to_phase, allowed, reason)

    def tasks_for(self, phase: str, variables: Mapping[str, Any]) -> list[TaskSpec]:
        """The phase's tasks, rendered against a ticket's variables (see `template_variables`); for a
        phase with `expand`, the steps of the plan in the context under that key. VariableError when
        the plan is not there (yet) or is not a plan."""
        spec = self.phase(phase)
        if spec.pattern is not None:
            try:
                return list(pattern_plan(spec.pattern, variables).tasks)
            except CoordinationError as exc:
                raise VariableError(
                    f"pattern {spec.pattern.name}", str(exc), where=f"phase {phase}"
                ) from None
        if spec.expand is None:
            return [template.render(variables, phase=phase) for template in spec.tasks]
        plan = (variables.get("context") or {}).get(spec.expand)
        if plan is None:
            raise VariableError(
                f"context.{spec.expand}", "no plan in the context", where=f"phase {phase} expand"
            )
        try:
            return specs_from_plan(plan, where=f"the plan of {spec.expand}")
        except TaskArgumentError as exc:
            raise VariableError(f"context.{spec.expand}", str(exc), where=f"phase {phase} expand") from None
