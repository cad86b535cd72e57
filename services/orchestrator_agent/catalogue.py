"""The task catalogue (config/patterns/task_catalogue.yaml): task kinds as DAGs of subtasks.

Loading validates everything a plan relies on: known capabilities and request types, dependencies
that exist, and no cycles; so a bad catalogue fails at start-up, not in the middle of a request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.resources import CONFIG_DIR

DEFAULT_CATALOGUE = CONFIG_DIR / "patterns" / "task_catalogue.yaml"
STEP_ID_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"


class CatalogueError(ValueError):
    """The catalogue file is missing or invalid."""


class UnknownTaskKind(ValueError):
    """The caller named (or the description suggests) no kind the catalogue knows."""


class PlanGraphError(ValueError):
    """A plan's dependencies are not a DAG (a cycle, a self-dependency or a dependency on nothing)."""


class _Node(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def depends_on(self) -> list[str]: ...
    @property
    def bindings(self) -> dict[str, str]: ...


class Subtask(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=STEP_ID_PATTERN)
    title: str = Field(min_length=1)
    capability: str = Field(min_length=1)
    request_type: str = Field(min_length=1)
    depends_on: list[str] = Field(default_factory=list)
    inputs: dict[str, str] = Field(default_factory=dict, description="payload field -> context key")
    params: dict[str, Any] = Field(default_factory=dict, description="fixed payload values")
    bindings: dict[str, str] = Field(default_factory=dict, description="payload field -> '<step>.<field>'")


class TaskKind(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str
    keywords: list[str] = Field(default_factory=list)
    subtasks: list[Subtask] = Field(min_length=1)


class Catalogue(BaseModel):
    model_config = ConfigDict(extra="forbid")

    capabilities: dict[str, list[str]] = Field(min_length=1)
    kinds: dict[str, TaskKind] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for name, kind in self.kinds.items():
            for sub in kind.subtasks:
                problem = self.request_problem(sub.capability, sub.request_type)
                if problem:
                    raise ValueError(f"kinds.{name}.{sub.id}: {problem}")
            try:
                topological_stages(kind.subtasks)
                check_bindings(kind.subtasks)
            except PlanGraphError as exc:
                raise ValueError(f"kinds.{name}: {exc}") from None
        return self

    def request_problem(self, capability: str, request_type: str) -> str | None:
        """Why `capability` + `request_type` is not a known pair, or None when it is."""
        if capability not in self.capabilities:
            return f"unknown capability {capability!r} (known: {', '.join(sorted(self.capabilities))})"
        if request_type not in self.capabilities[capability]:
            served = ", ".join(self.capabilities[capability])
            return f"capability {capability!r} does not serve {request_type!r} (it serves: {served})"
        return None

    def kind(self, name: str) -> TaskKind:
        if name not in self.kinds:
            raise UnknownTaskKind(
                f"kind: unknown task kind {name!r}; known kinds: {', '.join(sorted(self.kinds))}"
            )
        return self.kinds[name]

    def infer_kind(self, description: str) -> str:
        """The kind whose keywords the description matches most; UnknownTaskKind when none or a tie."""
        words = re.findall(r"[a-z0-9]+", description.lower())
        scores = {
            name: sum(1 for w in words for k in kind.keywords if w == k or (len(k) >= 4 and w.startswith(k)))
            for name, kind in self.kinds.items()
        }
        best = max(scores.values(), default=0)
        leaders = sorted(name for name, score in scores.items() if score == best)
        if best == 0 or len(leaders) > 1:
            why = "matches no kind" if best == 0 else f"matches {' and '.join(leaders)} equally"
            raise UnknownTaskKind(
                f"kind: the description {why}; give `kind`, one of: {', '.join(sorted(self.kinds))}"
            )
        return leaders[0]


def topological_stages(nodes: Sequence[_Node]) -> list[list[str]]:
    """Kahn's algorithm in stages: each stage holds the ids whose dependencies are all in earlier
    stages (so a stage's steps can run in parallel); ids keep their declared order within a stage."""
    ids = [n.id for n in nodes]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise PlanGraphError(f"duplicate step ids: {', '.join(duplicates)}")
    deps: dict[str, set[str]] = {}
    for node in nodes:
        missing = [d for d in node.depends_on if d not in ids]
        if missing:
            raise PlanGraphError(f"step {node.id!r} depends on unknown steps: {', '.join(missing)}")
        if node.id in node.depends_on:
            raise PlanGraphError(f"step {node.id!r} depends on itself")
        deps[node.id] = set(node.depends_on)
    stages: list[list[str]] = []
    done: set[str] = set()
    while len(done) < len(ids):
        ready = [i for i in ids if i not in done and deps[i] <= done]
        if not ready:
            cycle = sorted(i for i in ids if i not in done)
            raise PlanGraphError(f"dependency cycle among steps: {', '.join(cycle)}")
        stages.append(ready)
        done.update(ready)
    return stages


def check_bindings(nodes: Sequence[_Node]) -> None:
    """Every binding reads `<step>.<field>` of a step this one waits for (directly or not)."""
    deps = {n.id: set(n.depends_on) for n in nodes}
    for node in nodes:
        ancestors: set[str] = set()
        todo = list(deps.get(node.id, ()))
        while todo:
            step = todo.pop()
            if step not in ancestors:
                ancestors.add(step)
                todo.extend(deps.get(step, ()))
        for field_name, source in node.bindings.items():
            step, _, result_field = source.partition(".")
            if not result_field:
                raise PlanGraphError(
                    f"step {node.id!r}: binding {field_name!r} must be '<step>.<result field>'"
                )
            if step not in ancestors:
                raise PlanGraphError(
                    f"step {node.id!r}: binding {field_name!r} reads step {step!r}, "
                    "which it does not wait for"
                )


def flatten(stages: Iterable[list[str]]) -> list[str]:
    return [step for stage in stages for step in stage]


def load_catalogue(path: Path | str = DEFAULT_CATALOGUE) -> Catalogue:
    source = Path(path)
    try:
        data: Mapping[str, Any] = yaml.safe_load(source.read_text()) or {}
    except OSError as exc:
        raise CatalogueError(f"task catalogue {source}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise CatalogueError(f"task catalogue {source}: not valid YAML: {exc}") from None
    try:
        return Catalogue.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise CatalogueError(f"task catalogue {source}: {where}: {first['msg']}") from None


@lru_cache(maxsize=4)
def default_catalogue() -> Catalogue:
    return load_catalogue(DEFAULT_CATALOGUE)
