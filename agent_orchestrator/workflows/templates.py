"""Generic graph templates: sequential, parallel (fan-out with `Send`, then merge), map-reduce.
The parallel_docs workflow is a map-reduce (one branch per document type, then write and conclude).

Each returns an uncompiled `StateGraph`; the run worker compiles it with the
Postgres checkpointer. Nodes are plain callables (sync or async) taking the state
(and optionally the config) and returning a partial update. Parallel branches write
through the reducers of the state schema (see `agent_orchestrator.workflows.state`), so their
updates merge instead of colliding.

Every step may carry a LangGraph `RetryPolicy` (transient errors are retried inside
the step, without failing the run) and a timeout (an attempt running longer is
cancelled and counts as a failed attempt).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy, Send

NodeFn = Callable[..., Any]
Timeout = float | timedelta | None


@dataclass(frozen=True)
class Step:
    """One node: its name, its callable, and how transient failures and slowness are handled."""

    name: str
    fn: NodeFn
    retry: RetryPolicy | None = None
    timeout: Timeout = None


StepLike = Step | tuple[str, NodeFn]


class TemplateError(ValueError):
    """A template was given an unusable shape (no steps, duplicate or reserved names)."""


def _as_step(item: StepLike, retry: RetryPolicy | None, timeout: Timeout) -> Step:
    step = item if isinstance(item, Step) else Step(item[0], item[1])
    step_timeout = step.timeout if step.timeout is not None else timeout
    return Step(step.name, step.fn, step.retry or retry, step_timeout)


def _add(graph: StateGraph, step: Step) -> None:
    graph.add_node(step.name, step.fn, retry_policy=step.retry, timeout=step.timeout)


def _check_names(names: Sequence[str]) -> None:
    if not names:
        raise TemplateError("a template needs at least one step")
    seen: set[str] = set()
    for name in names:
        if not name or name in (START, END) or name.startswith("__"):
            raise TemplateError(f"step name {name!r} is empty or reserved")
        if name in seen:
            raise TemplateError(f"step name {name!r} is used twice")
        seen.add(name)


def sequential(
    state_schema: type[Any],
    steps: Sequence[StepLike],
    *,
    retry: RetryPolicy | None = None,
    timeout: Timeout = None,
) -> StateGraph:
    """START -> steps[0] -> steps[1] -> ... -> END."""
    resolved = [_as_step(s, retry, timeout) for s in steps]
    _check_names([s.name for s in resolved])
    graph = StateGraph(state_schema)
    previous = START
    for step in resolved:
        _add(graph, step)
        graph.add_edge(previous, step.name)
        previous = step.name
    graph.add_edge(previous, END)
    return graph


def parallel(
    state_schema: type[Any],
    branches: Mapping[str, NodeFn] | Sequence[StepLike],
    merge: StepLike,
    *,
    payload: Callable[[dict[str, Any], str], Any] | None = None,
    retry: RetryPolicy | None = None,
    timeout: Timeout = None,
) -> StateGraph:
    """START -> Send to every branch at once -> merge -> END.

    Each branch receives `payload(state, branch_name)` (default: the whole state) and
    returns an update; updates of the branches merge through the schema's reducers
    before `merge` runs once with the combined state.
    """
    items = list(branches.items()) if isinstance(branches, Mapping) else list(branches)
    resolved = [_as_step(b, retry, timeout) for b in items]
    merge_step = _as_step(merge, retry, timeout)
    _check_names([*(b.name for b in resolved), merge_step.name])
    graph = StateGraph(state_schema)
    names = [b.name for b in resolved]

    def fan_out(state: dict[str, Any]) -> list[Send]:
        return [Send(name, payload(state, name) if payload else state) for name in names]

    for branch in resolved:
        _add(graph, branch)
        graph.add_edge(branch.name, merge_step.name)
    _add(graph, merge_step)
    graph.add_conditional_edges(START, fan_out, names)
    graph.add_edge(merge_step.name, END)
    return graph


def map_reduce(
    state_schema: type[Any],
    items: str | Callable[[dict[str, Any]], Sequence[Any]],
    mapper: StepLike,
    reducer: StepLike,
    *,
    item_key: str = "item",
    payload: Callable[[dict[str, Any], Any, int], dict[str, Any]] | None = None,
    then: Sequence[StepLike] = (),
    retry: RetryPolicy | None = None,
    timeout: Timeout = None,
) -> StateGraph:
    """START -> one `mapper` branch per item (via `Send`) -> `reducer` -> `then`... -> END.

    `items` names a state key holding a list, or is a function of the state. Each
    mapper call gets `payload(state, item, index)`, by default ``{item_key: item, "index": i,
    **scalar identifiers}``, and returns an update (e.g. ``{"partial_results": {key: value}}``)
    merged by the reducers. With no items the reducer runs at once. `then` are steps run one
    after the other once the reducer is done (the parallel_docs workflow writes, then concludes).
    """
    map_step = _as_step(mapper, retry, timeout)
    reduce_step = _as_step(reducer, retry, timeout)
    after = [_as_step(s, retry, timeout) for s in then]
    _check_names([map_step.name, reduce_step.name, *(s.name for s in after)])
    graph = StateGraph(state_schema)

    def select(state: dict[str, Any]) -> Sequence[Any]:
        found = state.get(items, []) if isinstance(items, str) else items(state)
        return list(found or [])

    def fan_out(state: dict[str, Any]) -> list[Send] | str:
        selected = select(state)
        if not selected:
            return reduce_step.name
        if payload is not None:
            return [Send(map_step.name, payload(state, item, i)) for i, item in enumerate(selected)]
        base = {k: state[k] for k in ("task_id", "workflow_type") if k in state}
        return [Send(map_step.name, {**base, item_key: item, "index": i}) for i, item in enumerate(selected)]

    _add(graph, map_step)
    _add(graph, reduce_step)
    graph.add_conditional_edges(START, fan_out, [map_step.name, reduce_step.name])
    graph.add_edge(map_step.name, reduce_step.name)
    previous = reduce_step.name
    for step in after:
        _add(graph, step)
        graph.add_edge(previous, step.name)
        previous = step.name
    graph.add_edge(previous, END)
    return graph
