"""The batch's DAG check in Python: duplicate keys, unknown dependencies, cycles named as a path."""

from __future__ import annotations

import uuid

import pytest

from agent_orchestrator.tasks import DependencyError, TaskArgumentError, find_cycle, validate_batch
from support.tests.tasks.helpers import spec

pytestmark = pytest.mark.unit


def test_diamond_is_accepted_in_dependency_order() -> None:
    batch = [spec("d", "c", "b", "c"), spec("b", "c", "a"), spec("c", "c", "a"), spec("a", "c")]
    assert validate_batch(batch) == ["a", "b", "c", "d"]


def test_cycle_is_named_as_a_path() -> None:
    batch = [spec("x", "c"), spec("a", "c", "b"), spec("b", "c", "c"), spec("c", "c", "a", "x")]
    with pytest.raises(DependencyError) as caught:
        validate_batch(batch)
    assert caught.value.cycle == ["a", "b", "c", "a"]
    assert "a -> b -> c -> a" in str(caught.value)
    assert caught.value.problem == "dependency_cycle"


def test_self_dependency_is_a_cycle() -> None:
    with pytest.raises(DependencyError) as caught:
        validate_batch([spec("a", "c", "a")])
    assert caught.value.cycle == ["a", "a"]


def test_cycle_behind_acyclic_part_is_found() -> None:
    edges = {"root": ["m"], "m": ["n"], "n": ["o"], "o": ["m"], "p": []}
    assert find_cycle(edges) == ["m", "n", "o", "m"]
    assert find_cycle({"a": ["b"], "b": [], "c": ["a", "b"]}) is None


def test_long_chain_does_not_recurse() -> None:
    edges = {f"t{i}": [f"t{i + 1}"] for i in range(5000)}
    edges["t5000"] = []
    assert find_cycle(edges) is None
    edges["t5000"] = ["t0"]
    cycle = find_cycle(edges)
    assert cycle is not None and cycle[0] == cycle[-1] and len(cycle) == 5002


def test_duplicate_key_is_refused() -> None:
    with pytest.raises(TaskArgumentError) as caught:
        validate_batch([spec("a", "c"), spec("a", "c")])
    assert caught.value.field == "key"


def test_unknown_key_is_refused_and_ids_are_left_to_the_database() -> None:
    with pytest.raises(DependencyError) as caught:
        validate_batch([spec("a", "c", "nope")])
    assert (caught.value.unknown, caught.value.task_key) == ("nope", "a")
    assert caught.value.problem == "unknown_dependency"
    # An id may name an existing task of the ticket: only the database can tell.
    assert validate_batch([spec("a", "c", str(uuid.uuid4()))]) == ["a"]
