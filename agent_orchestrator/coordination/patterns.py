"""Load and check the coordination patterns: `config/patterns/<name>.pattern.yaml`.

Everything a phase will rely on is checked when the files are read, and a mistake names the file, the
key path in it (`steps[2].join.of[0]`) and why: unknown keys, bad values and bounds (schema.py), step
keys used twice, unknown steps in `depends_on` / `of` / `until` / `carry` / `result`, dependency cycles
between steps (a -> b -> a), placeholders that can never resolve (an unknown namespace, parameter,
step or field, `{part.*}` outside a split, `{loop.*}` outside a loop), a join, sync or merge over steps
that are not tasks rendered up front (analysis.py), a split read other than through a merge or join;
and across files: a `use` of an unknown pattern, parameters a used pattern does not declare (or
required ones left out), and a pattern that reaches itself through `use`, named as a cycle
(`a -> b -> a`).

Only files named `*.pattern.yaml` are patterns: config/patterns/task_catalogue.yaml is the orchestrator
agent's catalogue. `DEVTOOLS_PATTERNS_DIR` points at a team's own folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agent_orchestrator.coordination.analysis import upfront
from agent_orchestrator.coordination.checks import ScopeChecker, structure_error
from agent_orchestrator.coordination.errors import CoordinationArgumentError, PatternError
from agent_orchestrator.coordination.schema import AnyStep, LoopStep, PatternFile, TaskStep, UseStep
from agent_orchestrator.coordination.templating import parse_template, resolve, walk_strings
from agent_orchestrator.tasks import find_cycle
from shared.resources import CONFIG_DIR
from shared.specfile import SpecFileError, display_path, read_mapping

PATTERNS_DIR = Path(os.environ.get("DEVTOOLS_PATTERNS_DIR") or CONFIG_DIR / "patterns")
SUFFIX = ".pattern.yaml"
# The namespaces a pattern gives its placeholders itself: the phase gives ticket, repo and context.
RESERVED_VARIABLES = ("params", "steps", "part", "loop")


@dataclass(frozen=True)
class Pattern:
    """A loaded, checked pattern: its name, the file it came from, and its content."""

    name: str
    file: str
    spec: PatternFile
    # (key path, used pattern, what the reference needs: "result" or "task result") per reference to a
    # `use` step's result, checked once every pattern is loaded.
    use_refs: tuple[tuple[str, str, str], ...] = field(default=(), compare=False)


def load_pattern_file(path: Path) -> Pattern:
    """Read and check one pattern file on its own; PatternError(file, key, reason) when it is unusable.
    What needs the other patterns (`use`) is checked by load_patterns."""
    file = display_path(path)
    try:
        data = read_mapping(path, "`name:` and `steps:`")
    except SpecFileError as exc:
        raise PatternError(file, exc.key, exc.reason) from None
    try:
        spec = PatternFile.model_validate(data)
    except ValidationError as exc:
        raise structure_error(file, exc) from None
    expected = path.name.removesuffix(SUFFIX)
    if spec.name != expected:
        raise PatternError(file, "name", f"{spec.name!r} differs from the file's name ({expected}{SUFFIX})")
    checker = ScopeChecker(file, spec)
    checker.run()
    return Pattern(spec.name, file, spec, tuple(checker.use_refs))


def load_patterns(directory: Path = PATTERNS_DIR) -> dict[str, Pattern]:
    """Every `*.pattern.yaml` of `directory`, checked one by one and together; PatternError on the first
    problem. The patterns by name, in name order."""
    patterns: dict[str, Pattern] = {}
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        pattern = load_pattern_file(path)
        patterns[pattern.name] = pattern
    check_library(patterns)
    return patterns


def bind_params(
    pattern: Pattern, given: Mapping[str, Any], variables: Mapping[str, Any], *, resolve_given: bool = True
) -> dict[str, Any]:
    """The pattern's parameters: given values and defaults, placeholders resolved (ticket, repo,
    context), each checked against its declaration. CoordinationArgumentError('params.<name>', ...)."""
    declared = pattern.spec.parameters
    for name in given:
        if name not in declared:
            known = ", ".join(declared) or "none"
            raise CoordinationArgumentError(
                f"params.{name}",
                f"pattern {pattern.name} has no parameter {name!r} (its parameters: {known})",
            )
    values = {k: v for k, v in variables.items() if k not in RESERVED_VARIABLES}
    bound: dict[str, Any] = {}
    for name, parameter in declared.items():
        if name in given:
            value = resolve(given[name], values, where=f"params.{name}") if resolve_given else given[name]
        elif parameter.required:
            raise CoordinationArgumentError(f"params.{name}", f"pattern {pattern.name} needs this parameter")
        else:
            value = resolve(parameter.default, values, where=f"{pattern.name} parameters.{name}.default")
        if value is None and not parameter.required and name not in given:
            bound[name] = None  # an optional parameter without a value: reading it is an error
            continue
        if problem := parameter.problem(value):
            raise CoordinationArgumentError(f"params.{name}", problem)
        bound[name] = value
    return bound


def uses_of(steps: list[AnyStep], base: str) -> list[tuple[str, UseStep]]:
    """Every `use` step with its key path, loop bodies included."""
    found = []
    for i, step in enumerate(steps):
        if isinstance(step, UseStep):
            found.append((f"{base}[{i}]", step))
        elif isinstance(step, LoopStep):
            found += uses_of(list(step.loop.steps), f"{base}[{i}].loop.steps")
    return found


def check_library(patterns: Mapping[str, Pattern]) -> None:
    """The checks across patterns: unknown patterns, cycles through `use`, `with` against the used
    pattern's parameters, and the results that references to a `use` need."""
    known = ", ".join(sorted(patterns)) or "none"
    graph: dict[str, list[str]] = {}
    first_use: dict[tuple[str, str], str] = {}  # (pattern, used) -> key path of the first such use
    for name, pattern in patterns.items():
        graph[name] = []
        for key, step in uses_of(list(pattern.spec.steps), "steps"):
            if step.use not in patterns:
                raise PatternError(
                    pattern.file, f"{key}.use", f"unknown pattern {step.use!r} (known: {known})"
                )
            if step.use not in graph[name]:
                graph[name].append(step.use)
                first_use[(name, step.use)] = key
    cycle = find_cycle(graph)
    if cycle is not None:
        start = patterns[cycle[0]]
        raise PatternError(
            start.file,
            f"{first_use[(cycle[0], cycle[1])]}.use",
            f"pattern cycle: {' -> '.join(cycle)} (a pattern cannot use itself, directly or through others)",
        )
    for pattern in patterns.values():
        for key, step in uses_of(list(pattern.spec.steps), "steps"):
            _check_with(pattern, key, step, patterns[step.use])
        for key, used, need in pattern.use_refs:
            problem = result_problem(patterns, used, need)
            if problem:
                raise PatternError(pattern.file, key, problem)


def _check_with(pattern: Pattern, key: str, step: UseStep, used: Pattern) -> None:
    declared = used.spec.parameters
    for name, value in step.with_.items():
        if name not in declared:
            names = ", ".join(declared) or "none"
            raise PatternError(
                pattern.file,
                f"{key}.with.{name}",
                f"unknown parameter {name!r} of pattern {used.name} (its parameters: {names})",
            )
        has_placeholder = any(
            not isinstance(p, str) for _, text in walk_strings(value, "") for p in parse_template(text)
        )
        problem = None if has_placeholder else declared[name].problem(value)
        if problem:
            raise PatternError(pattern.file, f"{key}.with.{name}", f"parameter of {used.name}: {problem}")
    for name, parameter in declared.items():
        if parameter.required and name not in step.with_:
            raise PatternError(
                pattern.file, f"{key}.with", f"missing required parameter {name!r} of pattern {used.name}"
            )


def result_problem(patterns: Mapping[str, Pattern], name: str, need: str) -> str | None:
    """Why pattern `name` cannot serve as a referenced `use` step: it declares no result, or (`need`
    "task result": a join, sync or merge reads it) its result is not a task rendered up front."""
    pattern = patterns[name]
    result = pattern.spec.result
    if result is None:
        return f"pattern {name} declares no `result`: nothing of it can be read or waited for"
    if need != "task result":
        return None
    step = next(s for s in pattern.spec.steps if s.key == result)
    if step.key not in upfront(list(pattern.spec.steps)):
        return (
            f"the result of pattern {name} ({result}) is not a task made up front: "
            "a join, sync or merge cannot read it"
        )
    if isinstance(step, UseStep):
        return result_problem(patterns, step.use, need)
    if not isinstance(step, TaskStep):
        return f"the result of pattern {name} ({result}) is a {step.kind}, not a task"
    return None
