"""What a pattern's steps refer to, and which of them can be rendered up front: shared by the loader
(to refuse what could never run) and the expansion (to decide what becomes a task now).

A task step is rendered **up front** (a task created with the pattern) when everything it needs exists
when it is created or when it is dispatched: it depends only on up-front task steps of its scope, and each
`{steps.X.field}` it holds either names a step of an enclosing scope (a loop body's outer steps, done
before the loop started) or can be a binding: the whole value of a top-level payload field, naming an
up-front task step that is not split (the dispatcher fills it from X's result; see tasks/plans.py).
A `use` step is inlined up front under the same rule for its `depends_on`, and when its `with` reads no
step of its scope. Every other task or use step is **deferred**: the workflow renders it once what it
waits for is done.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from agent_orchestrator.coordination.schema import AnyStep, LoopStep, TaskStep, UseStep, step_kind
from agent_orchestrator.coordination.templating import Placeholder, parse_template, walk_strings

_BINDABLE_FIELD = re.compile(r"^payload\.[^.\[\]]+$")
_BINDING_SEGMENT = re.compile(r"^[A-Za-z0-9_]+$")  # what tasks.models.BINDING_PATTERN takes after the key


@dataclass(frozen=True)
class StepRef:
    """One `{steps.<target>...}` in a step: `rest` is the field path; `bindable` as described above."""

    target: str
    rest: tuple[str, ...]
    where: str
    bindable: bool


def templated(step: AnyStep) -> dict[str, object]:
    """The fields of a step that may hold placeholders, by their key path (a loop's body excluded:
    its steps are a scope of their own)."""
    if isinstance(step, TaskStep):
        fields: dict[str, object] = {"title": step.title, "payload": step.payload, "locks": step.locks}
        if step.split is not None:
            split = step.split.model_dump(exclude_none=True, exclude={"by"})
            fields["split"] = split
        return fields
    if isinstance(step, UseStep):
        return {"with": step.with_}
    if isinstance(step, LoopStep):
        options = step.loop
        return {
            "loop": {
                "max_rounds": options.max_rounds,
                "until": {"equals": options.until.equals},
                "carry": {name: {"initial": c.initial} for name, c in options.carry.items()},
            }
        }
    options = getattr(step, step.kind)
    numeric = {"join": "quorum", "sync": "timeout_seconds"}.get(step.kind)
    return {step.kind: {numeric: getattr(options, numeric)}} if numeric else {}


def step_placeholders(step: AnyStep) -> Iterator[tuple[str, str, tuple[str | Placeholder, ...]]]:
    """(key path, text, parsed parts) of every templated string of a step; parse errors propagate."""
    for where, text in walk_strings(templated(step), ""):
        yield where, text, parse_template(text)


def references(step: AnyStep) -> list[StepRef]:
    refs = []
    for where, _, parts in step_placeholders(step):
        sole = len(parts) == 1
        for part in parts:
            if isinstance(part, Placeholder) and part.namespace == "steps" and len(part.path) > 1:
                rest = part.path[2:]
                bindable = (
                    sole
                    and bool(rest)
                    and bool(_BINDABLE_FIELD.match(where))
                    and all(_BINDING_SEGMENT.match(s) for s in rest)
                )
                refs.append(StepRef(part.path[1], rest, where, bindable))
    return refs


def body_steps(step: AnyStep) -> list[AnyStep]:
    return list(step.loop.steps) if isinstance(step, LoopStep) else []


def outer_references(loop: LoopStep) -> set[str]:
    """The steps outside a loop that its body reads (the loop starts once they are done)."""
    inner = {s.key for s in loop.loop.steps}
    return {r.target for s in loop.loop.steps for r in references(s) if r.target not in inner}


def prerequisites(step: AnyStep, scope: Sequence[AnyStep]) -> list[str]:
    """Steps of `scope` that must be done before `step` starts (what a join, sync or merge reads is
    not among them: those are watched, not waited for first)."""
    keys = {s.key for s in scope}
    found = list(step.depends_on)
    found += [r.target for r in references(step) if r.target in keys]
    if isinstance(step, LoopStep):
        found += sorted(k for k in outer_references(step) if k in keys)
    return list(dict.fromkeys(found))


def edges(scope: Sequence[AnyStep]) -> dict[str, list[str]]:
    """step -> the steps of the scope it needs (prerequisites and inputs): the graph a cycle is found in."""
    keys = {s.key for s in scope}
    result = {}
    for step in scope:
        inputs = getattr(getattr(step, step.kind, None), "of", None) or []
        result[step.key] = [k for k in dict.fromkeys([*prerequisites(step, scope), *inputs]) if k in keys]
    return result


def upfront(scope: Sequence[AnyStep]) -> set[str]:
    """The keys of the task and use steps of `scope` that are rendered up front (module docstring)."""
    by_key = {s.key: s for s in scope}
    chosen = {s.key for s in scope if step_kind(s) in ("task", "use")}
    changed = True
    while changed:  # a fixed point: dropping one step may drop the steps that need it
        changed = False
        for key in sorted(chosen):
            if not _stays_upfront(by_key[key], by_key, chosen):
                chosen.discard(key)
                changed = True
    return chosen


def _stays_upfront(step: AnyStep, by_key: dict[str, AnyStep], chosen: set[str]) -> bool:
    for dep in step.depends_on:
        if dep not in chosen or not isinstance(by_key.get(dep), TaskStep):
            return False
    for ref in references(step):
        target = by_key.get(ref.target)
        if target is None:
            continue  # a step of an enclosing scope: done before this scope started
        if isinstance(step, UseStep):
            return False
        if not (
            ref.bindable and isinstance(target, TaskStep) and target.split is None and ref.target in chosen
        ):
            return False
    return True
