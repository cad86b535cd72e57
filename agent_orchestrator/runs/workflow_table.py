"""The workflow table the run engine reads: workflow name -> graph builder, input model, start state.

The engine knows no graph: a module registers its workflows here when it is imported (the
orchestrator service imports `agent_orchestrator.workflows.catalog`; a worker process imports the
modules named by ``--workflows``), and the engine only looks names up. ``POST /runs`` validates the
input against the model (422 naming the fields); the worker builds the graph, compiles it with the
run's checkpointer and starts it from the spec's start state.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from langgraph.graph import StateGraph
from pydantic import BaseModel

GraphBuilder = Callable[[], StateGraph]
StateFromInput = Callable[[BaseModel, str], dict[str, Any]]


class UnknownWorkflow(LookupError):
    def __init__(self, name: str, known: Iterable[str]) -> None:
        super().__init__(f"unknown workflow {name!r} (known: {', '.join(sorted(known)) or 'none'})")
        self.name = name


def default_state(workflow: str) -> StateFromInput:
    """The engine's minimal start state: the run and workflow ids beside the validated input."""

    def to_state(data: BaseModel, run_id: str) -> dict[str, Any]:
        return {"task_id": run_id, "workflow_type": workflow, **data.model_dump(mode="json")}

    return to_state


@dataclass
class WorkflowSpec:
    name: str
    build: GraphBuilder
    input_model: type[BaseModel]
    description: str = ""
    to_state: StateFromInput | None = None
    max_attempts: int = 3
    # LangGraph's default of 25 steps per invocation is too few for a graph that loops (a ticket).
    recursion_limit: int | None = None
    _graph: StateGraph | None = field(default=None, repr=False)

    def graph(self) -> StateGraph:
        """The builder's graph, built once (compiling it per run is cheap)."""
        if self._graph is None:
            self._graph = self.build()
        return self._graph

    def start_state(self, data: dict[str, Any], run_id: str) -> dict[str, Any]:
        parsed = self.input_model.model_validate(data)
        return (self.to_state or default_state(self.name))(parsed, run_id)


class WorkflowTable:
    def __init__(self) -> None:
        self._specs: dict[str, WorkflowSpec] = {}

    def register(
        self,
        name: str,
        build: GraphBuilder,
        input_model: type[BaseModel],
        *,
        description: str = "",
        to_state: StateFromInput | None = None,
        max_attempts: int = 3,
        recursion_limit: int | None = None,
    ) -> WorkflowSpec:
        if not name or not name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"workflow name {name!r}: use letters, digits, '_' or '-'")
        spec = WorkflowSpec(name, build, input_model, description, to_state, max_attempts, recursion_limit)
        self._specs[name] = spec  # re-registering replaces (module reloads, tests)
        return spec

    def get(self, name: str) -> WorkflowSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise UnknownWorkflow(name, self._specs) from None

    def names(self) -> list[str]:
        return sorted(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs


default_workflows = WorkflowTable()


def import_workflow_modules(modules: Iterable[str]) -> None:
    """Import modules whose import registers workflows (a worker's ``--workflows`` option)."""
    for module in modules:
        importlib.import_module(module)
