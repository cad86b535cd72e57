"""Check a batch of task specs before it reaches the database: duplicate keys, unknown dependencies
and cycles, with the cycle named as a path (`a -> b -> c -> a`, read "a depends on b ...").

Pure Python. The database checks again (create_tasks), but only Python can name the cycle as a path
cheaply; the database also decides whether an id refers to a task of the same ticket.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from agent_orchestrator.tasks.errors import (
    DEPENDENCY_CYCLE,
    UNKNOWN_DEPENDENCY,
    DependencyError,
    TaskArgumentError,
)
from agent_orchestrator.tasks.models import MAX_BATCH, TaskSpec


def is_task_id(reference: str) -> bool:
    """Whether a dependency reference is an id (of an existing task) rather than a key of the batch."""
    try:
        UUID(reference)
    except ValueError:
        return False
    return True


def validate_batch(specs: Sequence[TaskSpec]) -> list[str]:
    """Raise on a batch that is not a DAG; return its keys in an order where every task comes after
    its dependencies in the batch (a topological order, stable with respect to the batch's order).

    Raises TaskArgumentError('key') on a duplicate key, DependencyError on a dependency that is
    neither a key of the batch nor a task id, or on a cycle (`cycle` holds the path).
    """
    if len(specs) > MAX_BATCH:
        raise TaskArgumentError("specs", f"a batch holds at most {MAX_BATCH} task specs, got {len(specs)}")
    keys: dict[str, TaskSpec] = {}
    for spec in specs:
        if spec.key in keys:
            raise TaskArgumentError("key", f"task key {spec.key!r} appears twice in the batch")
        keys[spec.key] = spec
    edges: dict[str, list[str]] = {}
    for spec in specs:
        edges[spec.key] = []
        for reference in spec.depends_on:
            if reference in keys:
                edges[spec.key].append(reference)
            elif not is_task_id(reference):
                raise DependencyError(
                    f"task {spec.key!r} depends on unknown task {reference!r} "
                    "(neither a key of this batch nor a task id)",
                    problem=UNKNOWN_DEPENDENCY,
                    task_key=spec.key,
                    unknown=reference,
                )
            # An id is an existing task: it cannot depend on this batch, so it closes no cycle.
    cycle = find_cycle(edges)
    if cycle is not None:
        raise DependencyError(
            f"dependency cycle: {' -> '.join(cycle)}",
            problem=DEPENDENCY_CYCLE,
            task_key=cycle[0],
            cycle=cycle,
        )
    _check_bindings(specs, edges)
    return topological_order(edges)


def _check_bindings(specs: Sequence[TaskSpec], edges: dict[str, list[str]]) -> None:
    """A bound field takes its value from a task this one waits for, directly or not: otherwise the
    value would not exist yet when the task is sent."""
    for spec in specs:
        if not spec.bindings:
            continue
        ancestors: set[str] = set()
        todo = list(edges[spec.key])
        while todo:
            key = todo.pop()
            if key not in ancestors:
                ancestors.add(key)
                todo.extend(edges.get(key, ()))
        for field, source in spec.bindings.items():
            if source.split(".", 1)[0] not in ancestors:
                raise TaskArgumentError(
                    "bindings",
                    f"task {spec.key!r} binds {field} to {source!r}: not a task it depends on in this batch",
                )


def find_cycle(edges: dict[str, list[str]]) -> list[str] | None:
    """The first cycle found by a depth-first walk in the order of `edges`, as a path that ends at its
    start (`["a", "b", "a"]`), or None. Iterative: a long chain must not hit the recursion limit."""
    done: set[str] = set()
    for root in edges:
        if root in done:
            continue
        path: list[str] = [root]
        on_path: dict[str, int] = {root: 0}  # node -> its index in `path`
        pending: list[list[str]] = [list(reversed(edges.get(root, [])))]
        while path:
            if not pending[-1]:
                node = path.pop()
                pending.pop()
                del on_path[node]
                done.add(node)
                continue
            nxt = pending[-1].pop()
            if nxt in on_path:
                return [*path[on_path[nxt] :], nxt]
            if nxt in done:
                continue
            on_path[nxt] = len(path)
            path.append(nxt)
            pending.append(list(reversed(edges.get(nxt, []))))
    return None


def topological_order(edges: dict[str, list[str]]) -> list[str]:
    """Keys with dependencies first, otherwise in the given order (the graph must be acyclic)."""
    order: list[str] = []
    placed: set[str] = set()
    remaining = list(edges)
    while remaining:
        # Quadratic in the worst case; batches are small (at most MAX_BATCH).
        ready = [k for k in remaining if all(d in placed for d in edges[k])]
        order.extend(ready)
        placed.update(ready)
        remaining = [k for k in remaining if k not in placed]
    return order
