"""The backoff ceiling, error kinds and the spec's bounds (the jitter itself is SQL: test_task_lifecycle)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agent_orchestrator.tasks import Backoff, ErrorClass, ErrorKind, TaskSpec, TaskStatus

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("failure", [1, 2, 3, 5, 8, 12, 40, 5000])
def test_the_ceiling_doubles_up_to_the_cap(failure: int) -> None:
    assert Backoff(base_seconds=0.5, cap_seconds=60).ceiling(failure) == min(
        60, 0.5 * 2 ** min(failure - 1, 62)
    )


def test_backoff_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        Backoff(base_seconds=-1)
    with pytest.raises(ValueError):
        Backoff().ceiling(0)


def test_error_kinds_decide_the_class() -> None:
    retryable = {ErrorKind.TIMEOUT, ErrorKind.AGENT_GONE, ErrorKind.INFRASTRUCTURE, ErrorKind.RATE_LIMITED}
    for kind in ErrorKind:
        expected = ErrorClass.RETRYABLE if kind in retryable else ErrorClass.PERMANENT
        assert kind.error_class is expected, kind
    assert TaskStatus.BLOCKED.final and not TaskStatus.READY.final and TaskStatus.RUNNING.active


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("key", "Bad Key"),
        ("key", "x" * 65),
        ("title", "t" * 301),
        ("capability", " "),
        ("request_type", "r" * 101),
        ("priority", 1001),
        ("priority", -1001),
        ("timeout_seconds", 0),
        ("timeout_seconds", 86401),
        ("max_attempts", 0),
        ("max_attempts", 21),
        ("payload", {"blob": "x" * (256 * 1024)}),
        ("depends_on", [f"d{i}" for i in range(101)]),
        ("locks", [f"env:{i}" for i in range(6)]),
        ("locks", [""]),
        ("surprise", 1),
    ],
)
def test_spec_bounds(field: str, value: object) -> None:
    fields: dict[str, object] = {"key": "build", "capability": "cicd", "request_type": "build", field: value}
    with pytest.raises(ValidationError) as caught:
        TaskSpec.model_validate(fields)
    assert caught.value.errors()[0]["loc"][0] == field


def test_spec_defaults() -> None:
    spec = TaskSpec(key="build", capability="cicd", request_type="build")
    assert (spec.priority, spec.timeout_seconds, spec.max_attempts, spec.depends_on) == (0, 600, 3, [])
