"""Rendering a pattern for a ticket: `expand` gives the `PatternPlan` (plan.py) of what can be created
now and what the workflow carries out later; `render_deferred`, `render_round` and plan.loop_decision
are the calls the workflow makes as the plan goes on.

The workflow's contract (docs/COORDINATION_PATTERNS.md has it in full):

1. Create `plan.tasks` as one batch (their `depends_on` and `bindings` are complete; a `{steps.X.f}`
   that is a whole top-level payload value became a binding the dispatcher fills). Emit a
   `coordination_split` event per `plan.splits` entry.
2. Keep `results`: concrete key -> recorded result, for every task that succeeded and every action
   decided (a join's or sync's decision, a merge's MergeResult, a loop's result step's result), as JSON.
3. An action starts when every key of its `after` is done (plan.py). Then, until it is decided:
   join -> primitives.join over the `of` task rows; sync -> primitives.sync_point with the deadline
   `started + timeout_seconds` (cancel its `cancel` ids when it timed out); merge, once the `of` tasks
   are final -> merge.merge(primitives.results_of(rows, of), ...); deferred -> render_deferred(...)
   and go to 1 with that plan; loop -> render_round(1, ...), and when the round's plan is over
   loop_decision(...): continue renders the next round, done records the result under the loop's key,
   exhausted or failed fail the loop. A failed action (join failed, sync timed out with fail, a merge
   error, a loop that failed) fails what waits for it. Every decision is a coordination event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent_orchestrator.coordination.analysis import prerequisites, references, upfront
from agent_orchestrator.coordination.errors import CoordinationArgumentError, CoordinationError
from agent_orchestrator.coordination.patterns import RESERVED_VARIABLES, Pattern, bind_params, uses_of
from agent_orchestrator.coordination.plan import (
    DeferredAction,
    JoinAction,
    LoopAction,
    MergeAction,
    PatternPlan,
    ScopeEntry,
    SplitRecord,
    SyncAction,
)
from agent_orchestrator.coordination.primitives import partition, split
from agent_orchestrator.coordination.schema import (
    AnyStep,
    JoinStep,
    LoopStep,
    MergeStep,
    SyncStep,
    TaskStep,
    UseStep,
)
from agent_orchestrator.coordination.templating import MISSING, get_path, resolve, sole_placeholder
from agent_orchestrator.tasks import TaskSpec


@dataclass
class _Context:
    pattern: str
    params: dict[str, Any]
    prefix: str
    variables: Mapping[str, Any]
    library: Mapping[str, Pattern]
    results: Mapping[str, Any]
    scope: dict[str, ScopeEntry] = field(default_factory=dict)
    loop: dict[str, Any] | None = None

    def values(self, **extra: Any) -> dict[str, Any]:
        """What placeholders resolve against: the ticket's variables, the parameters, the results of
        the steps in scope that have one, the loop's variables."""
        steps = {k: self.results[e.key] for k, e in self.scope.items() if e.key and e.key in self.results}
        base = {k: v for k, v in self.variables.items() if k not in RESERVED_VARIABLES}
        return {**base, "params": self.params, "steps": steps, "loop": self.loop or {}, **extra}


def expand(
    pattern: Pattern,
    params: Mapping[str, Any],
    variables: Mapping[str, Any],
    *,
    library: Mapping[str, Pattern] | None = None,
    prefix: str = "",
) -> PatternPlan:
    """The plan of `pattern` for a ticket: `variables` as tickets.template_variables gives them
    (ticket, repo, context); `params` as the phase gives them (placeholders allowed); `library` is
    load_patterns() when the pattern uses others."""
    library = library if library is not None else {pattern.name: pattern}
    todo, seen = [pattern], {pattern.name}
    while todo:  # every pattern it uses, through others too, must be in the library
        for key, step in uses_of(list(todo.pop().spec.steps), "steps"):
            if step.use not in library:
                raise CoordinationArgumentError(
                    "library", f"{key} uses pattern {step.use!r}, which the library does not hold"
                )
            if step.use not in seen:
                seen.add(step.use)
                todo.append(library[step.use])
    bound = bind_params(pattern, params, variables)
    ctx = _Context(pattern.name, bound, prefix, variables, library, {})
    return _render_scope(ctx, list(pattern.spec.steps), pattern.spec.result)


def render_deferred(
    action: DeferredAction,
    variables: Mapping[str, Any],
    results: Mapping[str, Any],
    *,
    library: Mapping[str, Pattern],
) -> PatternPlan:
    """The plan of a deferred step, once its `after` is done: its tasks (no dependencies: what they
    waited for is done; step results are filled in) or the used pattern's plan."""
    ctx = _Context(
        action.pattern,
        action.params,
        action.prefix,
        variables,
        library,
        results,
        dict(action.scope),
        action.loop,
    )
    plan = PatternPlan(
        pattern=action.pattern, prefix=action.prefix, params=action.params, tasks=[], actions=[]
    )
    _render_now(ctx, action.template, plan, deferred=True)
    entry = ctx.scope.get(action.step)
    plan.result = entry.key if entry else None
    return plan


def render_round(
    action: LoopAction,
    round_number: int,
    variables: Mapping[str, Any],
    results: Mapping[str, Any],
    *,
    library: Mapping[str, Pattern],
) -> PatternPlan:
    """The plan of round `round_number` of a loop, keyed `<loop key>-r<round>-...`, with `{loop.round}`
    and the carried values (`initial` in round 1, then `next` of the round before)."""
    if not 1 <= round_number <= action.max_rounds:
        raise CoordinationArgumentError("round", f"loop {action.key} has rounds 1..{action.max_rounds}")
    options = action.template.loop
    ctx = _Context(action.pattern, action.params, "", variables, library, results, dict(action.scope))
    loop_vars: dict[str, Any] = {"round": round_number}
    for name, carried in options.carry.items():
        if round_number == 1:
            loop_vars[name] = resolve(carried.initial, ctx.values(), where=f"loop {action.key} carry {name}")
            continue
        source, path = action.carry_from[name]
        key = action.round_prefix(round_number - 1) + source
        value = get_path(results.get(key), path) if key in results else MISSING
        if value is MISSING or value is None:
            raise CoordinationError(
                f"loop {action.key} round {round_number}: carry {name} <- {carried.next}: "
                f"round {round_number - 1} recorded no {path} for {key}"
            )
        loop_vars[name] = value
    ctx.prefix, ctx.loop = action.round_prefix(round_number), loop_vars
    return _render_scope(ctx, list(options.steps), options.result)


def _static_key(step: AnyStep, prefix: str, library: Mapping[str, Pattern]) -> str | None:
    """Where a step's result is recorded (None: a split, or a used pattern without a result)."""
    if isinstance(step, UseStep):
        used = library[step.use].spec
        inner = next((s for s in used.steps if s.key == used.result), None)
        return _static_key(inner, f"{prefix}{step.key}-", library) if inner else None
    if isinstance(step, TaskStep) and step.split is not None:
        return None
    return prefix + step.key


def _entry(ctx: _Context, step: AnyStep) -> ScopeEntry:
    key = _static_key(step, ctx.prefix, ctx.library)
    if isinstance(step, TaskStep):
        if step.split is None:
            return ScopeEntry(
                kind="task", key=key, tasks=[ctx.prefix + step.key], done=[ctx.prefix + step.key]
            )
        parts = [f"{ctx.prefix}{step.key}.{i}" for i in range(1, len(_parts(ctx, step)) + 1)]
        return ScopeEntry(kind="split", key=None, tasks=parts, done=parts)
    tasks = []
    if isinstance(step, UseStep):  # a join over a used pattern reads its result task
        used = ctx.library[step.use].spec
        inner = next((s for s in used.steps if s.key == used.result), None)
        tasks = [key] if key and isinstance(inner, TaskStep | UseStep) else []
    return ScopeEntry(kind=step.kind, key=key, tasks=tasks, done=[key] if key else [])


def _render_scope(ctx: _Context, steps: list[AnyStep], result: str | None) -> PatternPlan:
    plan = PatternPlan(pattern=ctx.pattern, prefix=ctx.prefix, params=ctx.params, tasks=[], actions=[])
    for step in steps:
        ctx.scope[step.key] = _entry(ctx, step)
    now = upfront(steps)
    for step in steps:
        after = [k for name in prerequisites(step, steps) for k in ctx.scope[name].done]
        if step.key in now:
            _render_now(ctx, step, plan, deferred=False)
        elif isinstance(step, TaskStep | UseStep):
            plan.actions.append(DeferredAction(template=step, **_renderable(ctx, step, after)))
        elif isinstance(step, LoopStep):
            plan.actions.append(_loop_action(ctx, step, after))
        else:
            plan.actions.append(_coordination(ctx, step, after))
    plan.result = ctx.scope[result].key if result else None
    return plan


def _renderable(ctx: _Context, step: AnyStep, after: list[str]) -> dict[str, Any]:
    return {
        "key": ctx.prefix + step.key,
        "step": step.key,
        "pattern": ctx.pattern,
        "after": after,
        "prefix": ctx.prefix,
        "params": ctx.params,
        "scope": dict(ctx.scope),
        "loop": ctx.loop,
    }


def _number(ctx: _Context, value: Any, what: str, low: float, high: float) -> Any:
    if isinstance(value, str):
        placeholder = sole_placeholder(value)
        value = ctx.params.get(placeholder.path[1]) if placeholder else None
    if value is None or not low <= value <= high:
        raise CoordinationArgumentError(what, f"{value!r} is not within {low:g}..{high:g}")
    return value


def _coordination(ctx: _Context, step: AnyStep, after: list[str]) -> JoinAction | SyncAction | MergeAction:
    common = {"key": ctx.prefix + step.key, "step": step.key, "pattern": ctx.pattern, "after": after}
    options = getattr(step, step.kind)
    of = [task for name in options.of for task in ctx.scope[name].tasks]
    if isinstance(step, JoinStep):
        quorum = None
        if options.mode == "quorum":
            quorum = _number(ctx, options.quorum, f"{ctx.pattern} {step.key}.join.quorum", 1, len(of))
        return JoinAction(of=of, mode=options.mode, quorum=quorum, cancel_rest=options.cancel_rest, **common)
    if isinstance(step, SyncStep):
        timeout = _number(
            ctx, options.timeout_seconds, f"{ctx.pattern} {step.key}.sync.timeout_seconds", 1, 86400
        )
        return SyncAction(of=of, timeout_seconds=float(timeout), on_timeout=options.on_timeout, **common)
    assert isinstance(step, MergeStep)
    return MergeAction(
        of=of,
        strategy=options.strategy,
        field=options.field,
        identity=options.key,
        tie_breaker=options.tie_breaker,
        severity_order=options.severity_order,
        **common,
    )


def _loop_action(ctx: _Context, step: LoopStep, after: list[str]) -> LoopAction:
    options = step.loop
    body = {s.key: s for s in options.steps}

    def inner_key(name: str) -> str:
        return _static_key(body[name], "", ctx.library) or name

    max_rounds = _number(ctx, options.max_rounds, f"{ctx.pattern} {step.key}.loop.max_rounds", 1, 20)
    carry_from = {}
    for name, carried in options.carry.items():
        source, _, path = carried.next.partition(".")
        carry_from[name] = (inner_key(source), path)
    return LoopAction(
        template=step,
        max_rounds=max_rounds,
        until_key=inner_key(options.until.step),
        until_equals=resolve(
            options.until.equals, ctx.values(), where=f"{ctx.pattern} {step.key}.loop.until"
        ),
        result_key=inner_key(options.result) if options.result else None,
        carry_from=carry_from,
        **_renderable(ctx, step, after),
    )


def _parts(ctx: _Context, step: TaskStep) -> list[dict[str, Any]]:
    """The `{part.*}` values of each part of a split step (for `parts`, the part objects themselves)."""
    options = step.split
    assert options is not None
    where = f"{ctx.pattern} {step.key}.split"
    values = ctx.values()
    if options.source == "parts":
        parts = resolve(options.parts, values, where=where)
        if not isinstance(parts, list) or not all(isinstance(p, dict) for p in parts):
            raise CoordinationArgumentError(where + ".parts", "the parts are a list of objects")
        return [{**p, "index": i, "count": len(parts)} for i, p in enumerate(parts, start=1)]
    count = _number(ctx, options.count, where + ".count", 1, 50) if options.count is not None else 50
    if options.source == "count":
        return [{"index": i, "count": count} for i in range(1, count + 1)]
    files = resolve(options.files, values, where=where)
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise CoordinationArgumentError(where + ".files", "the files are a list of paths")
    by = options.by or "file"
    if by not in ("file", "module"):  # a {params.x} the loader checked: its choices are these two
        by = resolve(by, values, where=where, key="by")
    chunks = partition(files, count, by)
    return [{"index": i, "count": len(chunks), "files": c} for i, c in enumerate(chunks, start=1)]


def _render_now(ctx: _Context, step: AnyStep, plan: PatternPlan, *, deferred: bool) -> None:
    """Add a task or use step's tasks (and a used pattern's actions) to `plan`."""
    entry_of = ctx.scope
    depends = [] if deferred else [t for name in step.depends_on for t in entry_of[name].tasks]
    if isinstance(step, UseStep):
        used = ctx.library[step.use]
        given = resolve(step.with_, ctx.values(), where=f"{ctx.pattern} {step.key}.with")
        inner = _Context(
            used.name,
            bind_params(used, given, ctx.variables, resolve_given=False),
            f"{ctx.prefix}{step.key}-",
            ctx.variables,
            ctx.library,
            ctx.results,
        )
        sub = _render_scope(inner, list(used.spec.steps), used.spec.result)
        for spec in sub.tasks:
            spec.depends_on = list(dict.fromkeys([*spec.depends_on, *depends]))
        for action in sub.actions:
            action.after = list(dict.fromkeys([*action.after, *depends]))
        plan.extend(sub)
        return
    assert isinstance(step, TaskStep)
    where = f"{ctx.pattern} {step.key}"
    payload, bindings = dict(step.payload), {}
    if not deferred:
        for ref in references(step):
            entry = entry_of[ref.target]
            # The analysis made this step up front: a reference to its own scope is bindable. One to an
            # enclosing scope (a loop's outer steps) has its result already and is filled in below.
            if ref.bindable and entry.key not in ctx.results:
                field_name = ref.where.removeprefix("payload.")
                payload.pop(field_name, None)
                bindings[field_name] = f"{entry.key}.{'.'.join(ref.rest)}"
                depends.append(entry.key)
    values = ctx.values()
    base = {
        "key": ctx.prefix + step.key,
        "title": resolve(step.title or step.key, values, where=where, key="title"),
        "capability": step.capability,
        "request_type": step.request_type,
        "priority": step.priority,
        "depends_on": list(dict.fromkeys(depends)),
        "timeout_seconds": step.timeout_seconds,
        "max_attempts": step.max_attempts,
        "bindings": bindings,
        "locks": resolve(step.locks, values, where=where, key="locks"),
    }
    if step.split is None:
        plan.tasks.append(TaskSpec(payload=resolve(payload, values, where=where, key="payload"), **base))
        return
    parts = _parts(ctx, step)
    by = None if step.split.source != "files" else resolve(step.split.by or "file", ctx.values(), where=where)
    payloads = []
    for part in parts:
        rendered = resolve(payload, {**values, "part": part}, where=where, key="payload")
        if step.split.source == "parts":  # a part's own fields override the payload's
            rendered.update({k: v for k, v in part.items() if k not in ("index", "count")})
        payloads.append(rendered)
    specs = split(TaskSpec(payload={}, **base), payloads)
    plan.tasks.extend(specs)
    plan.splits.append(
        SplitRecord(key=base["key"], parts=[s.key for s in specs], source=step.split.source, by=by)
    )
