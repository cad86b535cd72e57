"""The ticket store on real PostgreSQL: creation with its history row, filters, optimistic locking
(stale versions refused and nothing changed), serialized transitions, the phase machine's rules,
context and run, and the procedures' argument errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest

from agent_orchestrator.tickets import (
    PhaseTransition,
    StaleVersion,
    Ticket,
    TicketArgumentError,
    TicketCreate,
    TicketNotFound,
    TicketQuery,
    TicketStatus,
    TicketStore,
    TicketUpdate,
    TransitionRefused,
    template_variables,
    ticket_error_from,
)
from shared.db import connect_async, open_pool

pytestmark = pytest.mark.integration

WORK_PHASES = ["INITIAL", "IMPLEMENTATION", "INTEGRATION", "REFACTORING"]


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[TicketStore]:
    pool = await open_pool(database_url, min_size=1, max_size=4, name="tickets-tests")
    try:
        yield TicketStore(pool)
    finally:
        await pool.close()


def _new(author: str, **fields: Any) -> TicketCreate:
    data: dict[str, Any] = {
        "title": "Add shout()",
        "repo": {"path": "/srv/repos/greeter"},
        "created_by": author,
    }
    return TicketCreate.model_validate({**data, **fields})


def _author() -> str:
    """A created_by of this test's own: the module's tests share one database."""
    return f"user-{uuid4().hex[:8]}"


async def _move(store: TicketStore, ticket: Ticket, *phases: str) -> Ticket:
    for phase in phases:
        ticket = await store.transition(ticket.id, PhaseTransition(to_phase=phase, actor="tester"))
    return ticket


async def test_create_starts_in_the_initial_phase_with_a_history_row(store: TicketStore) -> None:
    author = _author()
    ticket = await store.create(
        _new(
            author,
            description="Shout it.",
            priority="high",
            labels=["api"],
            repo={"path": "/r", "head_branch": "f"},
        )
    )
    assert (ticket.phase, ticket.status, ticket.version) == ("INITIAL", TicketStatus.OPEN, 1)
    assert (ticket.title, ticket.description, ticket.priority.value, ticket.labels) == (
        "Add shout()",
        "Shout it.",
        "high",
        ["api"],
    )
    assert (ticket.repo_path, ticket.base_branch, ticket.head_branch) == ("/r", "main", "f")
    assert (ticket.context, ticket.run_id, ticket.closed_at) == ({}, None, None)
    (first,) = await store.history(ticket.id)
    assert (first.ticket_id, first.from_phase, first.to_phase, first.actor, first.reason) == (
        ticket.id,
        None,
        "INITIAL",
        author,
        "created",
    )
    assert await store.get(ticket.id) == ticket


async def test_unknown_tickets_and_phase_files_are_named(store: TicketStore) -> None:
    ghost = uuid4()
    for call in (
        store.get(ghost),
        store.history(ghost),
        store.update(ghost, 1, TicketUpdate(title="x")),
        store.transition(ghost, PhaseTransition(to_phase="DONE", actor="a")),
        store.merge_context(ghost, "k", 1),
        store.set_run(ghost, None),
    ):
        with pytest.raises(TicketNotFound) as missing:
            await call
        assert missing.value.ticket_id == str(ghost)
    with pytest.raises(TicketArgumentError) as bad:
        await store.create(_new(_author(), phase_file="nope"))
    assert bad.value.field == "phase_file"


async def test_list_filters_combine_and_page(store: TicketStore) -> None:
    author = _author()
    a = await store.create(_new(author, title="a", priority="critical", labels=["api", "ux"]))
    b = await store.create(_new(author, title="b", priority="low", labels=["api"]))
    c = await store.create(_new(author, title="c", priority="low"))
    await _move(store, b, "BLOCKED")
    await _move(store, c, "IMPLEMENTATION")

    async def titles(**filters: Any) -> list[str]:
        found = await store.list_tickets(TicketQuery(created_by=author, **filters))
        return [t.title for t in found]

    assert await titles() == ["c", "b", "a"]  # newest first
    assert await titles(label="api") == ["b", "a"]
    assert await titles(label="ux", priority="critical") == ["a"]
    assert await titles(priority="low") == ["c", "b"]
    assert await titles(status="blocked") == ["b"]
    assert await titles(phase="IMPLEMENTATION") == ["c"]
    assert await titles(phase="INITIAL", status="open") == ["a"]
    assert await titles(status="done") == []
    assert await titles(limit=2) == ["c", "b"]
    assert await titles(limit=2, offset=2) == ["a"]
    assert a.id in {t.id for t in await store.list_tickets()}


async def test_update_changes_what_was_given_and_bumps_the_version(store: TicketStore) -> None:
    ticket = await store.create(_new(_author(), repo={"path": "/r", "head_branch": "feature/x"}))
    updated = await store.update(
        ticket.id, 1, TicketUpdate(title="Shout louder", labels=["api"], priority="high")
    )
    assert (updated.version, updated.title, updated.labels, updated.priority.value) == (
        2,
        "Shout louder",
        ["api"],
        "high",
    )
    assert (updated.description, updated.head_branch) == (ticket.description, "feature/x")
    cleared = await store.update(ticket.id, 2, TicketUpdate(head_branch=None))
    assert (cleared.version, cleared.head_branch, cleared.title) == (3, None, "Shout louder")
    assert len(await store.history(ticket.id)) == 1  # edits are not phase moves


async def test_a_stale_update_is_refused_with_the_current_version_and_changes_nothing(
    store: TicketStore,
) -> None:
    ticket = await store.create(_new(_author()))
    await store.update(ticket.id, 1, TicketUpdate(title="first edit"))
    before = await store.get(ticket.id)
    with pytest.raises(StaleVersion) as stale:
        await store.update(ticket.id, 1, TicketUpdate(title="second edit, from an old read", priority="low"))
    assert (stale.value.expected_version, stale.value.current_version) == (1, 2)
    assert stale.value.ticket_id == str(ticket.id)
    assert "current version is 2" in str(stale.value)
    assert await store.get(ticket.id) == before


async def _wait_for_lock_waiters(database_url: str, count: int) -> None:
    """Until `count` backends wait on a lock (the moves blocked behind the test's row lock)."""
    async with await connect_async(database_url) as conn, asyncio.timeout(10):
        while True:
            cur = await conn.execute(
                "SELECT count(*) AS n FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            row = await cur.fetchone()
            if row and row["n"] >= count:  # type: ignore[index]
                return
            await asyncio.sleep(0.01)  # another server process's state: there is no event to await


async def test_concurrent_transitions_with_one_version_one_wins_one_is_stale(
    store: TicketStore, database_url: str
) -> None:
    ticket = await store.create(_new(_author()))
    # Hold the row so both moves have read version 1 and wait inside transition_ticket together.
    blocker = await connect_async(database_url, autocommit=False)
    try:
        await blocker.execute("SELECT 1 FROM tickets WHERE id = %s FOR UPDATE", (ticket.id,))
        moves = [
            asyncio.create_task(
                store.transition(
                    ticket.id, PhaseTransition(to_phase=to, actor=f"actor-{to}", expected_version=1)
                )
            )
            for to in ("IMPLEMENTATION", "CANCELLED")
        ]
        await _wait_for_lock_waiters(database_url, 2)
        await blocker.rollback()
    finally:
        await blocker.close()
    results = await asyncio.gather(*moves, return_exceptions=True)
    won = [r for r in results if isinstance(r, Ticket)]
    lost = [r for r in results if isinstance(r, StaleVersion)]
    assert (len(won), len(lost)) == (1, 1), results
    assert (won[0].version, lost[0].current_version, lost[0].expected_version) == (2, 2, 1)
    history = await store.history(ticket.id)
    assert [(h.from_phase, h.to_phase) for h in history] == [(None, "INITIAL"), ("INITIAL", won[0].phase)]
    assert history[-1].actor == f"actor-{won[0].phase}"
    assert await store.get(ticket.id) == won[0]


async def test_an_undeclared_transition_is_refused_with_the_allowed_list(store: TicketStore) -> None:
    ticket = await store.create(_new(_author()))
    with pytest.raises(TransitionRefused) as refused:
        await store.transition(ticket.id, PhaseTransition(to_phase="INTEGRATION", actor="a"))
    assert refused.value.allowed == ["IMPLEMENTATION", "BLOCKED", "CANCELLED"]
    assert "INITIAL -> INTEGRATION" in str(refused.value)
    assert await store.get(ticket.id) == ticket
    assert len(await store.history(ticket.id)) == 1


async def test_a_stale_expected_version_on_a_move_is_refused(store: TicketStore) -> None:
    ticket = await store.create(_new(_author()))
    await store.update(ticket.id, 1, TicketUpdate(priority="low"))
    with pytest.raises(StaleVersion) as stale:
        await store.transition(
            ticket.id, PhaseTransition(to_phase="IMPLEMENTATION", actor="a", expected_version=1)
        )
    assert stale.value.current_version == 2
    moved = await store.transition(
        ticket.id, PhaseTransition(to_phase="IMPLEMENTATION", actor="a", reason="go", expected_version=2)
    )
    assert (moved.phase, moved.version) == ("IMPLEMENTATION", 3)
    assert (await store.history(ticket.id))[-1].reason == "go"


@pytest.mark.parametrize("phase", WORK_PHASES)
async def test_blocked_and_cancelled_from_every_open_phase(store: TicketStore, phase: str) -> None:
    ticket = await store.create(_new(_author()))
    ticket = await _move(store, ticket, *WORK_PHASES[1 : WORK_PHASES.index(phase) + 1])
    assert ticket.phase == phase
    blocked = await _move(store, ticket, "BLOCKED")
    assert (blocked.status, blocked.closed_at) == (TicketStatus.BLOCKED, None)
    # A blocked ticket resumes where it was blocked, and nowhere else.
    elsewhere = next(p for p in WORK_PHASES if p != phase)
    with pytest.raises(TransitionRefused) as refused:
        await _move(store, blocked, elsewhere)
    assert refused.value.allowed == [phase, "CANCELLED"]
    resumed = await _move(store, blocked, phase)
    assert (resumed.phase, resumed.status) == (phase, TicketStatus.OPEN)
    cancelled = await _move(store, resumed, "CANCELLED")
    assert cancelled.status == TicketStatus.CANCELLED and cancelled.closed_at is not None
    for target in ("BLOCKED", phase, "DONE"):
        with pytest.raises(TransitionRefused) as refused:
            await _move(store, cancelled, target)
        assert refused.value.allowed == []
    history = [(h.from_phase, h.to_phase) for h in await store.history(ticket.id)]
    assert history[-3:] == [(phase, "BLOCKED"), ("BLOCKED", phase), (phase, "CANCELLED")]


async def test_done_is_final(store: TicketStore) -> None:
    ticket = await store.create(_new(_author()))
    done = await _move(store, ticket, *WORK_PHASES[1:], "DONE")
    assert (done.phase, done.status, done.version) == ("DONE", TicketStatus.DONE, 5)
    assert done.closed_at is not None
    for target in ("BLOCKED", "CANCELLED", "REFACTORING"):
        with pytest.raises(TransitionRefused, match="DONE is terminal"):
            await _move(store, done, target)
    assert [h.to_phase for h in await store.history(ticket.id)] == [*WORK_PHASES, "DONE"]


async def test_context_feeds_the_next_phases_templates(store: TicketStore) -> None:
    ticket = await store.create(
        _new(_author(), repo={"path": "/srv/repos/greeter", "head_branch": "feature/x"})
    )
    review = {
        "head_commit": "c0ffee",
        "findings": [{"file": "app.py", "line": 6}],
        "stats": {"files_changed": 1},
    }
    merged = await store.merge_context(ticket.id, "change", review)
    assert (merged.version, merged.context) == (2, {"change": review})
    merged = await store.merge_context(ticket.id, "note", None, expected_version=2)
    assert (merged.version, merged.context) == (3, {"change": review, "note": None})
    with pytest.raises(StaleVersion):
        await store.merge_context(ticket.id, "note", "late", expected_version=2)
    tasks = {t.key: t for t in store.machine("default").tasks_for("INTEGRATION", template_variables(merged))}
    assert tasks["deploy"].payload["ref"] == "c0ffee"
    with pytest.raises(TicketArgumentError) as bad:
        await store.merge_context(ticket.id, "a.b", 1)
    assert bad.value.field == "key"


async def test_set_run_attaches_a_real_run(store: TicketStore) -> None:
    ticket = await store.create(_new(_author()))
    async with store.pool.connection() as conn:
        row = await (
            await conn.execute("INSERT INTO runs (workflow) VALUES ('ticket') RETURNING id")
        ).fetchone()
    run_id: UUID = row["id"]  # type: ignore[index]
    attached = await store.set_run(ticket.id, run_id)
    assert (attached.run_id, attached.version) == (run_id, 2)
    with pytest.raises(TicketArgumentError) as bad:
        await store.set_run(ticket.id, uuid4())
    assert bad.value.field == "run_id"
    detached = await store.set_run(ticket.id, None)
    assert (detached.run_id, detached.version) == (None, 3)


@pytest.mark.parametrize(
    ("sql", "params", "field"),
    [
        ("SELECT * FROM create_ticket('', '/r', 'me', 'INITIAL')", (), "title"),
        ("SELECT * FROM create_ticket('t', '/r', 'me', 'INITIAL', p_priority => 'urgent')", (), "priority"),
        (
            "SELECT * FROM create_ticket('t', '/r', 'me', 'INITIAL', p_labels => %s)",
            ([str(i) for i in range(21)],),
            "labels",
        ),
        ("SELECT * FROM create_ticket('t', '/r', 'me', 'INITIAL', p_head_branch => '-x')", (), "head_branch"),
        ("SELECT * FROM create_ticket('t', '/r', 'me', 'INITIAL', p_phase_file => '../x')", (), "phase_file"),
        ('SELECT * FROM update_ticket(gen_random_uuid(), 1, \'{"titel": "x"}\')', (), "changes"),
        ("SELECT * FROM update_ticket(gen_random_uuid(), 1, '{}')", (), "changes"),
        ('SELECT * FROM update_ticket(gen_random_uuid(), 1, \'{"labels": "api"}\')', (), "labels"),
        ('SELECT * FROM update_ticket(gen_random_uuid(), NULL, \'{"title": "x"}\')', (), "expected_version"),
        (
            "SELECT * FROM transition_ticket(gen_random_uuid(), NULL, 'DONE', 'finished', 'a')",
            (),
            "to_status",
        ),
        ("SELECT * FROM transition_ticket(gen_random_uuid(), NULL, 'DONE', 'done', ' ')", (), "actor"),
    ],
)
async def test_procedure_argument_errors_name_the_argument(
    store: TicketStore, sql: str, params: tuple[Any, ...], field: str
) -> None:
    async with store.pool.connection() as conn:
        with pytest.raises(psycopg.Error) as raised:
            await conn.execute(sql, params)
    mapped = ticket_error_from(raised.value)
    assert isinstance(mapped, TicketArgumentError)
    assert mapped.field == field
    assert str(mapped).startswith(f"invalid {field}: ")
