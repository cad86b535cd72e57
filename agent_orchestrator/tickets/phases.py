"""Load and validate a phase file (`config/phases/<name>.yaml`) into a `PhaseMachine`.

Everything a ticket will rely on is checked at load, so a bad file fails when it is read, with
the file, the key path inside it (`phases[2].tasks[1].depends_on`) and the reason, never halfway
through a ticket: unknown keys, bounds, undeclared phases in `next` / `from_any_open`, terminal
phases with transitions or tasks, unreachable phases, task keys used twice, dependencies on
unknown tasks, dependency cycles (named: a -> b -> a), placeholders that can never resolve
(an unknown namespace or field, or `{context.X}` where X is no task of an earlier phase), and gates
that could never be evaluated (gates/checks.py: unknown tasks or measures, back_to a later phase).

The schema is described at the top of config/phases/default.yaml.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent_orchestrator.tickets.context import SUMMARY_KEY
from agent_orchestrator.tickets.errors import PhaseFileError, TicketArgumentError, VariableError
from agent_orchestrator.tickets.gates import Gate, PhaseView, check_gate
from agent_orchestrator.tickets.machine import Phase, PhaseMachine, TaskTemplate
from agent_orchestrator.tickets.models import PHASE_FILE_PATTERN, PHASE_NAME_PATTERN, TicketStatus
from agent_orchestrator.tickets.phase_patterns import PhasePattern, pattern_problem
from agent_orchestrator.tickets.variables import parse_template, placeholder_problem, walk_strings
from shared.resources import CONFIG_DIR
from shared.specfile import SpecFileError, display_path, is_model, key_path, read_mapping, unwrap

# DEVTOOLS_PHASES_DIR: a folder of a team's own phase files instead of the shipped ones.
PHASES_DIR = Path(os.environ.get("DEVTOOLS_PHASES_DIR") or CONFIG_DIR / "phases")
TASK_KEY_PATTERN = r"^[a-z][a-z0-9_]{0,49}$"

Name = Annotated[str, Field(pattern=PHASE_NAME_PATTERN)]


class _TaskFile(BaseModel):
    # strict: a quoted "3" is not a number and `yes` is not a string; what the file says is what runs.
    model_config = ConfigDict(extra="forbid", strict=True)

    key: str = Field(pattern=TASK_KEY_PATTERN)
    title: str = Field("", max_length=300)
    capability: str = Field(pattern=r"^[a-z][a-z0-9_]{0,49}$")
    request_type: str = Field(pattern=r"^[A-Z][A-Z0-9_]{0,49}$")
    payload: dict[str, Any] = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list, max_length=50)
    priority: int = Field(0, ge=-1000, le=1000)
    # The tasks layer's bounds (agent_orchestrator.tasks.TaskSpec): a file that loads renders valid tasks.
    timeout_seconds: float = Field(600.0, ge=1, le=86400)
    max_attempts: int = Field(3, ge=1, le=20)
    locks: list[Annotated[str, Field(min_length=1, max_length=300)]] = Field(
        default_factory=list, max_length=5
    )


class _PhaseFile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: Name
    description: str = Field("", max_length=2000)
    status: Literal["open", "blocked", "done", "cancelled"] = "open"
    next: list[Name] = Field(default_factory=list, max_length=50)
    return_to_previous: bool = False
    tasks: list[_TaskFile] = Field(default_factory=list, max_length=50)
    # The phase's tasks are the steps of the DECOMPOSE_TASK plan this task of an earlier phase returned.
    expand: str | None = Field(None, pattern=TASK_KEY_PATTERN)
    # The phase's tasks, joins and merges are a coordination pattern's (tickets/phase_patterns.py).
    pattern: PhasePattern | None = None
    gate: Gate | None = None


class _MachineFile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    description: str = Field("", max_length=2000)
    from_any_open: list[Name] = Field(default_factory=list, max_length=50)
    phases: list[_PhaseFile] = Field(min_length=1, max_length=50)


def _tag(model: Any) -> str | None:
    """The value that selects `model` in a tagged union: its `kind` (criteria) or `action` (on_fail)."""
    fields = model.model_fields if is_model(model) else {}
    name = next((n for n in ("kind", "action") if n in fields), None)
    return str(get_args(fields[name].annotation)[0]) if name else None


def _resolve_loc(loc: Sequence[int | str]) -> tuple[list[int | str], type[BaseModel] | None]:
    """A validation error's location as the file's key path, without the tag pydantic inserts for a
    tagged union (`criteria.0.threshold.min` is `criteria[0].min` in the file), and the schema model
    of the mapping it ends at (to list its allowed keys)."""
    current: Any = _MachineFile
    path: list[int | str] = []
    for item in loc:
        current = unwrap(current)
        if get_origin(current) in (Union, UnionType):  # a tagged union (criteria, on_fail): item is the tag
            current = next((m for m in get_args(current) if _tag(m) == item), None)
            continue
        if isinstance(item, int):
            current = (get_args(current) or (None,))[0]
        elif is_model(current) and item in current.model_fields:
            current = current.model_fields[item].annotation
        else:
            current = None
        path.append(item)
    current = unwrap(current)
    return path, current if is_model(current) else None


def _structure_error(file: str, exc: ValidationError) -> PhaseFileError:
    error = exc.errors()[0]
    loc, _ = _resolve_loc(error["loc"])
    ctx = error.get("ctx") or {}
    reason = error["msg"]
    if error["type"] == "extra_forbidden":
        _, parent = _resolve_loc(error["loc"][:-1])
        allowed = f" (allowed: {', '.join(parent.model_fields)})" if parent else ""
        reason = f"unknown key {loc[-1]!r}{allowed}"
    elif error["type"] == "missing":
        reason = "missing required key"
    elif error["type"] == "union_tag_not_found":
        reason = f"missing required key {ctx.get('discriminator', '')}"
    elif error["type"] == "union_tag_invalid":
        loc.append(str(ctx.get("discriminator", "")).strip("'"))
        reason = f"unknown value {ctx.get('tag', '')!r} (one of: {ctx.get('expected_tags', '')})"
    elif error["type"] == "value_error" and "error" in ctx:
        reason = str(ctx["error"])  # without pydantic's "Value error, " prefix
    return PhaseFileError(file, key_path(loc), reason)


def _dependency_cycle(tasks: Sequence[_TaskFile]) -> tuple[int, list[str]] | None:
    """(index of the task where a cycle was found, the cycle a -> ... -> a), or None."""
    depends = {t.key: t.depends_on for t in tasks}
    state: dict[str, str] = {}  # "active" while on the DFS stack, "done" after

    def visit(key: str, stack: list[str]) -> list[str] | None:
        state[key] = "active"
        stack.append(key)
        for dep in depends[key]:
            if state.get(dep) == "active":
                return [*stack[stack.index(dep) :], dep]
            if dep not in state and (cycle := visit(dep, stack)):
                return cycle
        stack.pop()
        state[key] = "done"
        return None

    for index, task in enumerate(tasks):
        if task.key not in state and (cycle := visit(task.key, [])):
            return index, cycle
    return None


class _Checker:
    """The checks a valid structure still has to pass; each failure names its key path."""

    def __init__(self, file: str, spec: _MachineFile) -> None:
        self.file, self.spec = file, spec
        self.names = [p.name for p in spec.phases]

    def fail(self, key: str, reason: str) -> PhaseFileError:
        return PhaseFileError(self.file, key, reason)

    def declared(self, name: str, key: str) -> None:
        if name not in self.names:
            raise self.fail(key, f"undeclared phase {name!r} (declared: {', '.join(self.names)})")

    def run(self) -> None:
        self.phases()
        for i, name in enumerate(self.spec.from_any_open):
            self.declared(name, f"from_any_open[{i}]")
        self.tasks()
        self.gates()
        self.reachability()

    def phases(self) -> None:
        spec = self.spec
        for i, phase in enumerate(spec.phases):
            if phase.name in self.names[:i]:
                raise self.fail(f"phases[{i}].name", f"phase {phase.name!r} is declared twice")
            for j, target in enumerate(phase.next):
                self.declared(target, f"phases[{i}].next[{j}]")
                if target == phase.name:
                    raise self.fail(f"phases[{i}].next[{j}]", "a phase cannot transition to itself")
            if phase.pattern is not None:
                if phase.tasks or phase.expand is not None:
                    raise self.fail(f"phases[{i}].pattern", "a phase takes its tasks from a pattern alone")
                if problem := pattern_problem(phase.pattern):
                    raise self.fail(f"phases[{i}].{problem[0]}", problem[1])
            if phase.expand is not None:
                earlier = {t.key for p in spec.phases[:i] for t in p.tasks}
                if phase.tasks:
                    raise self.fail(
                        f"phases[{i}].expand", "a phase takes its tasks from a plan or lists them, not both"
                    )
                if phase.expand not in earlier:
                    raise self.fail(
                        f"phases[{i}].expand",
                        f"{phase.expand!r} is no task of an earlier phase (its result is the plan to run)",
                    )
            if phase.status in ("done", "cancelled"):
                for key, value in (("next", phase.next), ("tasks", phase.tasks), ("expand", phase.expand)):
                    if value:
                        raise self.fail(
                            f"phases[{i}].{key}", f"a terminal phase (status {phase.status}) has no {key}"
                        )
                if phase.return_to_previous:
                    raise self.fail(f"phases[{i}].return_to_previous", "a terminal phase cannot be left")
        if spec.phases[0].status != "open":
            raise self.fail(
                "phases[0].status", "the first phase is where tickets start: its status must be open"
            )
        if not any(p.status in ("done", "cancelled") for p in spec.phases):
            raise self.fail(
                "phases", "no terminal phase (status done or cancelled): tickets could never close"
            )

    def tasks(self) -> None:
        owner: dict[str, str] = {}  # task key -> key path of its declaration
        for i, phase in enumerate(self.spec.phases):
            keys = [t.key for t in phase.tasks]
            for j, task in enumerate(phase.tasks):
                if task.key in owner:
                    raise self.fail(
                        f"phases[{i}].tasks[{j}].key",
                        f"task key {task.key!r} is already used by {owner[task.key]}: the context keeps one "
                        "result per key, so keys are unique in the file",
                    )
                owner[task.key] = f"phases[{i}].tasks[{j}]"
                for k, dep in enumerate(task.depends_on):
                    if dep not in keys:
                        raise self.fail(
                            f"phases[{i}].tasks[{j}].depends_on[{k}]",
                            f"unknown task {dep!r} (tasks of {phase.name}: {', '.join(keys)})",
                        )
            if cycle := _dependency_cycle(phase.tasks):
                j, path = cycle
                raise self.fail(
                    f"phases[{i}].tasks[{j}].depends_on", f"dependency cycle: {' -> '.join(path)}"
                )
            for j, task in enumerate(phase.tasks):
                self.placeholders(i, j, task)

    def placeholders(self, i: int, j: int, task: _TaskFile) -> None:
        phases = self.spec.phases
        earlier = {t.key for p in phases[:i] for t in p.tasks}
        phase_of = {t.key: p.name for p in phases[i:] for t in p.tasks}  # for a hint on a misplaced key
        base = f"phases[{i}].tasks[{j}]"
        values = {"title": task.title, "payload": task.payload, "locks": task.locks}
        for where, text in walk_strings(values, ""):
            key = f"{base}.{where}"
            try:
                parts = parse_template(text)
            except VariableError as exc:
                raise self.fail(key, exc.reason) from None
            for part in parts:
                if isinstance(part, str):
                    continue
                if i > 0 and part.namespace == "context" and part.path[1:2] == (SUMMARY_KEY,):
                    continue  # once a phase has ended, the bounded summary of what it learned exists
                problem = placeholder_problem(part, earlier)
                owner = phase_of.get(part.path[1]) if len(part.path) > 1 else None
                if problem and part.namespace == "context" and owner:
                    where_from = "this phase" if owner == phases[i].name else f"the later phase {owner}"
                    problem += (
                        f"; {part.path[1]!r} is a task of {where_from}: its result is not in the context yet"
                    )
                if problem:
                    raise self.fail(key, problem)

    def gates(self) -> None:
        views = [
            PhaseView(
                name=p.name,
                status=p.status,
                tasks={t.key: (t.request_type, t.payload) for t in p.tasks},
                # Task keys of a plan or a pattern are only known for a ticket: not checked at load.
                expand=p.expand or (p.pattern.name if p.pattern else None),
            )
            for p in self.spec.phases
        ]
        for i, phase in enumerate(self.spec.phases):
            if phase.gate is not None:
                earlier = {t.key for p in self.spec.phases[:i] for t in p.tasks}
                check_gate(self.file, i, phase.gate, views, earlier)

    def reachability(self) -> None:
        spec = self.spec
        by_name = {p.name: p for p in spec.phases}
        seen, todo = {self.names[0]}, [self.names[0]]
        while todo:
            phase = by_name[todo.pop()]
            if phase.status in ("done", "cancelled"):
                continue
            for target in (*phase.next, *spec.from_any_open):
                if target not in seen:
                    seen.add(target)
                    todo.append(target)
        for i, name in enumerate(self.names):
            if name not in seen:
                raise self.fail(f"phases[{i}].name", f"phase {name!r} is unreachable from {self.names[0]}")


def _build(name: str, file: str, spec: _MachineFile) -> PhaseMachine:
    phases = tuple(
        Phase(
            name=p.name,
            status=TicketStatus(p.status),
            description=p.description,
            next=tuple(p.next),
            return_to_previous=p.return_to_previous,
            expand=p.expand,
            pattern=p.pattern,
            gate=p.gate,
            tasks=tuple(
                TaskTemplate(
                    key=t.key,
                    title=t.title or t.key,
                    capability=t.capability,
                    request_type=t.request_type,
                    payload=t.payload,
                    depends_on=tuple(t.depends_on),
                    priority=t.priority,
                    timeout_seconds=float(t.timeout_seconds),
                    max_attempts=t.max_attempts,
                    locks=tuple(t.locks),
                )
                for t in p.tasks
            ),
        )
        for p in spec.phases
    )
    return PhaseMachine(
        name=name,
        file=file,
        phases=phases,
        from_any_open=tuple(spec.from_any_open),
        description=spec.description,
    )


def load_phase_file(path: Path) -> PhaseMachine:
    """Read and validate one phase file; PhaseFileError(file, key, reason) when it is unusable."""
    file = display_path(path)
    try:
        data = read_mapping(path, "at least `phases:`")
    except SpecFileError as exc:
        raise PhaseFileError(file, exc.key, exc.reason) from None
    try:
        spec = _MachineFile.model_validate(data)
    except ValidationError as exc:
        raise _structure_error(file, exc) from None
    _Checker(file, spec).run()
    return _build(path.stem, file, spec)


def phase_file_names(directory: Path = PHASES_DIR) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.yaml"))


def load_phase_machine(name: str = "default", directory: Path = PHASES_DIR) -> PhaseMachine:
    """The machine of `<directory>/<name>.yaml`; TicketArgumentError('phase_file') for an unknown name."""
    if not re.fullmatch(PHASE_FILE_PATTERN, name):
        raise TicketArgumentError("phase_file", f"{name!r} is not a phase file name ([a-z0-9][a-z0-9_-]*)")
    path = directory / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(phase_file_names(directory)) or "none"
        raise TicketArgumentError(
            "phase_file", f"no phase file {name}.yaml in {display_path(directory)} (known: {known})"
        )
    return load_phase_file(path)
