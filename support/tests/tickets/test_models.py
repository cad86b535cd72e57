"""Input models: bad input fails naming the field, with bounds on numbers and strings."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from agent_orchestrator.tickets import PhaseTransition, Priority, TicketCreate, TicketQuery, TicketUpdate

pytestmark = pytest.mark.unit

VALID: dict[str, Any] = {
    "title": "Add shout()",
    "repo": {"path": "/srv/repos/greeter"},
    "created_by": "alice",
}


def _loc(exc: ValidationError) -> str:
    return ".".join(str(part) for part in exc.errors()[0]["loc"])


def test_a_valid_ticket_gets_defaults_and_normalised_labels() -> None:
    ticket = TicketCreate.model_validate(
        {**VALID, "labels": [" api ", "api", "ux"], "title": "  Add shout()  "}
    )
    assert ticket.title == "Add shout()"
    assert ticket.labels == ["api", "ux"]
    assert ticket.priority is Priority.MEDIUM
    assert (ticket.repo.base_branch, ticket.repo.head_branch, ticket.phase_file) == ("main", None, "default")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "x" * 301}, "title"),
        ({"title": "two\nlines"}, "title"),
        ({"description": "x" * 20001}, "description"),
        ({"priority": "urgent"}, "priority"),
        ({"labels": [f"l{i}" for i in range(21)]}, "labels"),
        ({"labels": ["x" * 51]}, "labels.0"),
        ({"labels": ["ok", ""]}, "labels.1"),
        ({"created_by": ""}, "created_by"),
        ({"repo": {"path": "relative/repo"}}, "repo.path"),
        ({"repo": {"path": "/r", "base_branch": "-rf"}}, "repo.base_branch"),
        ({"repo": {"path": "/r", "head_branch": "a..b"}}, "repo.head_branch"),
        ({"repo": {"path": "/r", "head_branch": "has space"}}, "repo.head_branch"),
        ({"repo": {"path": "/r", "url": "x"}}, "repo.url"),
        ({"phase_file": "../x"}, "phase_file"),
        ({"owner": "bob"}, "owner"),
    ],
)
def test_bad_input_names_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as bad:
        TicketCreate.model_validate({**VALID, **change})
    assert _loc(bad.value) == field


def test_an_update_carries_only_what_was_given() -> None:
    assert TicketUpdate(title="New").changes() == {"title": "New"}
    assert TicketUpdate(head_branch=None).changes() == {"head_branch": None}
    assert TicketUpdate(priority="low", labels=["a", "a"]).changes() == {"priority": "low", "labels": ["a"]}
    with pytest.raises(ValidationError, match="nothing to change"):
        TicketUpdate()
    with pytest.raises(ValidationError, match="title: may not be null"):
        TicketUpdate(title=None)
    with pytest.raises(ValidationError) as bad:
        TicketUpdate.model_validate({"status": "done"})
    assert _loc(bad.value) == "status"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"to_phase": "done", "actor": "a"}, "to_phase"),
        ({"to_phase": "DONE", "actor": ""}, "actor"),
        ({"to_phase": "DONE", "actor": "a", "expected_version": 0}, "expected_version"),
        ({"to_phase": "DONE", "actor": "a", "reason": "x" * 2001}, "reason"),
    ],
)
def test_a_bad_transition_names_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as bad:
        PhaseTransition.model_validate(data)
    assert _loc(bad.value) == field


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"offset": -1}, "offset"),
        ({"status": "gone"}, "status"),
    ],
)
def test_list_filters_are_bounded(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as bad:
        TicketQuery.model_validate(data)
    assert _loc(bad.value) == field


def test_public_names_import_from_the_package() -> None:
    import agent_orchestrator.tickets as tickets

    missing = [name for name in tickets.__all__ if getattr(tickets, name, None) is None]
    assert missing == []
