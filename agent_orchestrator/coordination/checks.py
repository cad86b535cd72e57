"""The checks of one pattern file beyond its schema, each failure naming its key path; and a schema
error turned into the file's key path and a reason (without the tags pydantic adds for a union)."""

from __future__ import annotations

from collections.abc import Sequence
from types import UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from agent_orchestrator.coordination.analysis import edges, templated, upfront
from agent_orchestrator.coordination.errors import PatternError, TemplateError
from agent_orchestrator.coordination.merge import MergeResult
from agent_orchestrator.coordination.primitives import MAX_PARTS, JoinDecision, SyncDecision
from agent_orchestrator.coordination.schema import (
    MAX_ROUNDS,
    STEP_MODELS,
    AnyStep,
    JoinStep,
    LoopStep,
    PatternFile,
    SyncStep,
    TaskStep,
    UseStep,
)
from agent_orchestrator.coordination.templating import (
    NAMESPACES,
    REPO_FIELDS,
    TICKET_FIELDS,
    Placeholder,
    parse_template,
    sole_placeholder,
    walk_strings,
)
from agent_orchestrator.tasks import find_cycle
from shared.specfile import is_model, key_path, unwrap

DECISION_FIELDS = {
    "join": set(JoinDecision.model_fields),
    "sync": set(SyncDecision.model_fields),
    "merge": set(MergeResult.model_fields),
}
PART_FIELDS = {"count": ("index", "count"), "files": ("index", "count", "files")}


def _fields(model: type[BaseModel]) -> dict[str, Any]:
    return {(f.alias or name): f.annotation for name, f in model.model_fields.items()}


def _resolve_loc(loc: Sequence[int | str]) -> tuple[list[int | str], type[BaseModel] | None]:
    """The file's key path of an error location, and the model of the mapping it ends at."""
    current: Any = PatternFile
    path: list[int | str] = []
    for item in loc:
        current = unwrap(current)
        if get_origin(current) in (Union, UnionType):
            members = [unwrap(m) for m in get_args(current)]
            if all(is_model(m) for m in members):  # the step union: the item is its tag
                current = STEP_MODELS.get(str(item))
                continue
            if isinstance(item, str) and not item.startswith("[") and item not in ("[key]",):
                # a union of plain types (`int | str`): pydantic names the member it tried
                current = next(
                    (m for m in members if str(item).startswith(getattr(m, "__name__", "?"))), None
                )
                continue
        if isinstance(item, int):
            current = (get_args(current) or (None,))[0]
        elif is_model(current):
            current = _fields(current).get(item)
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        else:
            current = None
        path.append(item)
    current = unwrap(current)
    return path, current if is_model(current) else None


def structure_error(file: str, exc: ValidationError) -> PatternError:
    errors = exc.errors()
    # An unknown key first: it is most often the misspelling of the key reported missing.
    error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc, _ = _resolve_loc(error["loc"])
    ctx = error.get("ctx") or {}
    reason = error["msg"]
    if error["type"] == "extra_forbidden":
        _, parent = _resolve_loc(error["loc"][:-1])
        allowed = f" (allowed: {', '.join(_fields(parent))})" if parent else ""
        reason = f"unknown key {loc[-1]!r}{allowed}"
    elif error["type"] == "missing":
        reason = "missing required key"
    elif error["type"] == "union_tag_invalid":
        reason = f"a {ctx.get('tag')} step cannot be here (a loop's body holds task, join, sync, merge, use)"
    elif error["type"] == "value_error" and "error" in ctx:
        reason = str(ctx["error"])  # without pydantic's "Value error, " prefix
    if loc and loc[-1] == "[key]":
        loc, reason = loc[:-1], f"not a valid name: {reason}"
    return PatternError(file, key_path(loc), reason)


class ScopeChecker:
    """The checks of one file; `use_refs` collects what only the other patterns can settle."""

    def __init__(self, file: str, spec: PatternFile) -> None:
        self.file, self.spec = file, spec
        self.params = spec.parameters
        self.use_refs: list[tuple[str, str, str]] = []

    def fail(self, key: str, reason: str) -> PatternError:
        return PatternError(self.file, key, reason)

    def run(self) -> None:
        self.parameters()
        steps = list(self.spec.steps)
        self.scope(steps, "steps", outer={}, carry=None)
        if self.spec.result is not None:
            self.result_step(self.spec.result, steps, "result", "of the pattern")

    def parameters(self) -> None:
        for name, p in self.params.items():
            key = f"parameters.{name}"
            for bound in ("min", "max"):
                value = getattr(p, bound)
                if value is None:
                    continue
                if p.type in ("boolean", "object"):
                    raise self.fail(f"{key}.{bound}", f"a {p.type} parameter has no bounds")
                if p.type in ("string", "list") and (not isinstance(value, int) or value < 0):
                    raise self.fail(f"{key}.{bound}", f"a {p.type}'s bound is a length: a whole number >= 0")
            if p.min is not None and p.max is not None and p.min > p.max:
                raise self.fail(f"{key}.max", f"max {p.max} is less than min {p.min}")
            if p.choices is not None and p.type != "string":
                raise self.fail(f"{key}.choices", "choices are for string parameters")
            if p.required or p.default is None:
                continue
            placeholders = self.placeholders_in(p.default, f"{key}.default")
            for where, part in placeholders:
                if part.namespace not in ("ticket", "repo", "context"):
                    raise self.fail(
                        where, f"{part.text}: a default reads the ticket, the repo or the context only"
                    )
                if problem := self.problem(part, None, "", {}, None, where):
                    raise self.fail(where, problem)
            if not placeholders and (problem := p.problem(p.default)):
                raise self.fail(f"{key}.default", problem)

    def placeholders_in(self, value: Any, base: str) -> list[tuple[str, Placeholder]]:
        found = []
        for where, text in walk_strings(value, ""):
            key = f"{base}{where}" if where.startswith("[") or not where else f"{base}.{where}"
            try:
                parts = parse_template(text)
            except TemplateError as exc:
                raise self.fail(key, exc.reason) from None
            found += [(key, p) for p in parts if isinstance(p, Placeholder)]
        return found

    def scope(
        self, steps: list[AnyStep], base: str, outer: dict[str, AnyStep], carry: set[str] | None
    ) -> None:
        by_key: dict[str, AnyStep] = {}
        for i, step in enumerate(steps):
            if step.key in by_key or step.key in outer:
                where = "in this scope" if step.key in by_key else "outside this loop"
                raise self.fail(f"{base}[{i}].key", f"step key {step.key!r} is already used {where}")
            by_key[step.key] = step
        visible = {**outer, **by_key}
        for i, step in enumerate(steps):
            key = f"{base}[{i}]"
            for j, dep in enumerate(step.depends_on):
                self.reference(dep, step, by_key, f"{key}.depends_on[{j}]", "result")
            for where, part in self.placeholders_in(templated(step), key):
                if problem := self.problem(part, step, where.removeprefix(f"{key}."), visible, carry, where):
                    raise self.fail(where, problem)
            self.numbers(step, key, by_key)
            if isinstance(step, LoopStep):
                self.loop(step, key, visible)
        graph = edges(steps)
        if cycle := find_cycle(graph):
            index = next(i for i, s in enumerate(steps) if s.key == cycle[0])
            raise self.fail(f"{base}[{index}]", f"dependency cycle between steps: {' -> '.join(cycle)}")
        made_up_front = upfront(steps)
        for i, step in enumerate(steps):
            options = getattr(step, step.kind, None)
            for j, name in enumerate(getattr(options, "of", None) or []):
                where = f"{base}[{i}].{step.kind}.of[{j}]"
                target = self.reference(name, step, by_key, where, "task result")
                if not isinstance(target, TaskStep | UseStep):
                    raise self.fail(where, f"{name!r} is a {target.kind}: a {step.kind} reads tasks")
                if name not in made_up_front:
                    raise self.fail(
                        where,
                        f"{name!r} is created only once what it waits for is done: a {step.kind} reads "
                        "steps made up front (see docs/COORDINATION_PATTERNS.md, up front and deferred)",
                    )

    def reference(
        self, name: str, step: AnyStep, by_key: dict[str, AnyStep], where: str, need: str
    ) -> AnyStep:
        """The step `name` refers to from `step`, checked: known in the scope, not itself; a used
        pattern's result is settled once every pattern is loaded."""
        if name == step.key:
            raise self.fail(where, f"step {name!r} refers to itself")
        target = by_key.get(name)
        if target is None:
            raise self.fail(where, f"unknown step {name!r} (steps here: {', '.join(by_key)})")
        if isinstance(target, UseStep):
            self.use_refs.append((where, target.use, need))
        return target

    def problem(
        self,
        part: Placeholder,
        step: AnyStep | None,
        where: str,
        visible: dict[str, AnyStep],
        carry: set[str] | None,
        key: str,
    ) -> str | None:
        """Why a placeholder can never resolve, or None."""
        namespace, rest = part.namespace, part.path[1:]
        if namespace not in NAMESPACES:
            return f"unknown variable namespace {namespace!r} in {part.text} (known: {', '.join(NAMESPACES)})"
        if not rest:
            return f"{part.text} names a whole namespace; name a field, e.g. {{{namespace}.…}}"
        name = rest[0]
        if namespace == "ticket":
            if name not in TICKET_FIELDS:
                return f"unknown ticket field {name!r} in {part.text} (known: {', '.join(TICKET_FIELDS)})"
            if len(rest) > 1 and not (name == "labels" and len(rest) == 2 and rest[1].isdigit()):
                return f"ticket.{name} has no fields: {part.text}"
        elif namespace == "repo":
            if name not in REPO_FIELDS or len(rest) > 1:
                return f"unknown repo field in {part.text} (known: {', '.join(REPO_FIELDS)})"
        elif namespace == "params":
            declared = self.params.get(name)
            if declared is None:
                known = ", ".join(self.params) or "none"
                return f"unknown parameter {name!r} in {part.text} (parameters: {known})"
            if len(rest) > 1 and declared.type not in ("list", "object"):
                return f"params.{name} is a {declared.type}: it has no fields ({part.text})"
        elif namespace == "part":
            split = step.split if isinstance(step, TaskStep) else None
            if split is None or not where.startswith("payload"):
                return f"{part.text}: {{part.*}} is for the payload of a split step only"
            allowed = PART_FIELDS.get(split.source)
            if allowed is not None and name not in allowed:
                has = ", ".join(allowed)
                return f"unknown part field {name!r} in {part.text} (a split by {split.source} has: {has})"
        elif namespace == "loop":
            if carry is None:
                return f"{part.text}: {{loop.*}} is for the steps of a loop only"
            if name != "round" and name not in carry:
                return f"unknown loop variable {name!r} in {part.text} (round, {', '.join(sorted(carry))})"
        elif namespace == "steps":
            return self.step_problem(part, step, where, visible, key)
        return None

    def step_problem(
        self, part: Placeholder, step: AnyStep | None, where: str, visible: dict[str, AnyStep], key: str
    ) -> str | None:
        name, rest = part.path[1], part.path[2:]
        if step is None or where.startswith("split"):
            return f"{part.text}: a split's parts (and a default) are decided before any step ran"
        if name == step.key:
            return f"{part.text}: a step cannot read its own result"
        target = visible.get(name)
        if target is None:
            return f"unknown step {name!r} in {part.text} (steps: {', '.join(visible)})"
        if isinstance(target, TaskStep) and target.split is not None:
            return f"{part.text}: {name!r} is split; read its results through a merge (or a join)"
        fields = DECISION_FIELDS.get(target.kind)
        if fields is not None and rest and rest[0] not in fields:
            known = ", ".join(sorted(fields))
            return f"unknown field {rest[0]!r} of the {target.kind} {name!r} in {part.text} (known: {known})"
        if isinstance(target, LoopStep) and target.loop.result is None:
            return f"{part.text}: loop {name!r} declares no `result` to read"
        if isinstance(target, UseStep):
            self.use_refs.append((key, target.use, "result"))
        return None

    def numbers(self, step: AnyStep, key: str, by_key: dict[str, AnyStep]) -> None:
        if isinstance(step, TaskStep) and step.split is not None:
            if step.split.count is not None:
                self.number(step.split.count, f"{key}.split.count", 1, MAX_PARTS, ("integer",))
            self.split_by(step.split.by, f"{key}.split.by")
        elif isinstance(step, JoinStep) and step.join.quorum is not None:
            tasks = [by_key.get(k) for k in step.join.of]
            known = all(isinstance(t, TaskStep) and t.split is None for t in tasks)
            self.number(
                step.join.quorum, f"{key}.join.quorum", 1, len(tasks) if known else 10_000, ("integer",)
            )
        elif isinstance(step, SyncStep):
            self.number(
                step.sync.timeout_seconds, f"{key}.sync.timeout_seconds", 1, 86400, ("integer", "number")
            )
        elif isinstance(step, LoopStep):
            self.number(step.loop.max_rounds, f"{key}.loop.max_rounds", 1, MAX_ROUNDS, ("integer",))

    def split_by(self, value: str | None, key: str) -> None:
        if value is None or value in ("file", "module"):
            return
        sole = sole_placeholder(value)
        declared = self.params.get(sole.path[1]) if sole and len(sole.path) == 2 else None
        if (
            sole is None
            or sole.namespace != "params"
            or declared is None
            or declared.type != "string"
            or not set(declared.choices or ["?"]) <= {"file", "module"}
        ):
            raise self.fail(
                key, "give file or module, or exactly one {params.x} of a string parameter with those choices"
            )

    def number(self, value: Any, key: str, low: float, high: float, types: tuple[str, ...]) -> None:
        if isinstance(value, str):
            sole = sole_placeholder(value)
            declared = self.params.get(sole.path[1]) if sole and len(sole.path) == 2 else None
            if sole is None or sole.namespace != "params" or declared is None or declared.type not in types:
                raise self.fail(
                    key, f"give a number, or exactly one {{params.x}} of a {' or '.join(types)} parameter"
                )
            return  # the value is checked against these bounds when the pattern is expanded
        if not low <= value <= high:
            raise self.fail(key, f"{value} is not within {low}..{high:g}")

    def loop(self, step: LoopStep, key: str, visible: dict[str, AnyStep]) -> None:
        options = step.loop
        body = {s.key: s for s in options.steps}
        self.body_reference(options.until.step, body, f"{key}.loop.until.step")
        for where, part in self.placeholders_in(options.until.equals, f"{key}.loop.until.equals"):
            if part.namespace not in ("params", "ticket", "repo", "context"):
                raise self.fail(where, f"{part.text}: the value to reach is known before the loop starts")
        for name, carried in options.carry.items():
            self.body_reference(carried.next.split(".")[0], body, f"{key}.loop.carry.{name}.next")
        if options.result is not None:
            self.result_step(options.result, list(options.steps), f"{key}.loop.result", "of this loop")
        outer = {k: s for k, s in visible.items() if k != step.key}
        self.scope(list(options.steps), f"{key}.loop.steps", outer=outer, carry=set(options.carry))

    def body_reference(
        self, name: str, body: dict[str, AnyStep], where: str, scope: str = "of this loop"
    ) -> None:
        target = body.get(name)
        if target is None:
            raise self.fail(where, f"unknown step {name!r} (steps {scope}: {', '.join(body)})")
        if isinstance(target, TaskStep) and target.split is not None:
            raise self.fail(where, f"{name!r} is split; read its results through a merge (or a join)")
        if isinstance(target, UseStep):
            self.use_refs.append((where, target.use, "result"))

    def result_step(self, name: str, steps: list[AnyStep], where: str, scope: str) -> None:
        self.body_reference(name, {s.key: s for s in steps}, where, scope)
        target = next(s for s in steps if s.key == name)
        if isinstance(target, LoopStep) and target.loop.result is None:
            raise self.fail(where, f"loop {name!r} declares no `result`")
