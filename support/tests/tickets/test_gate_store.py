"""The gate store on real PostgreSQL: artifacts recorded once per (task, kind) however often a phase
is recorded, a retried task's later attempt replacing its earlier one's, evaluation results as rows
(the verdict checked against the criteria), failed rounds per phase across visits, and the
procedures' errors as TicketErrors naming the argument."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from agent_orchestrator.tasks import Task, TaskSpec, TaskStore
from agent_orchestrator.tickets import TicketArgumentError, TicketNotFound
from agent_orchestrator.tickets.gates import (
    MAX_CONTENT_BYTES,
    Gate,
    GateResult,
    GateStore,
    evaluate,
    visit_label,
)
from shared.db import open_pool
from support.tests.tasks.helpers import insert_ticket, run_on, sql
from support.tests.tickets import gate_results as results

pytestmark = pytest.mark.integration

GATE = Gate.model_validate(
    {
        "criteria": [
            {"kind": "threshold", "task": "tests", "measure": "tests.all_passed", "equals": True},
            {"kind": "artifact", "artifact": "review", "task": "review"},
            {"kind": "approval", "question": "Ship it?"},
        ]
    }
)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    pool = await open_pool(database_url, min_size=1, max_size=4, name="gates-tests")
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
def gates(pool: AsyncConnectionPool) -> GateStore:
    return GateStore(pool)


async def _done(
    tasks: TaskStore, ticket_id: UUID, phase: str, outcomes: dict[str, tuple[str, Any]]
) -> list[Task]:
    """Create the phase's tasks and drive each through a real attempt to success with its result."""
    capability = f"cap-{uuid4().hex[:10]}"  # this test's own: claims never see another test's tasks
    specs = [TaskSpec(key=k, capability=capability, request_type=rt) for k, (rt, _) in outcomes.items()]
    await tasks.create_tasks(ticket_id, phase, specs)
    for claimed in await tasks.claim_ready("dispatcher-1", len(specs), 60, [capability]):
        await run_on(tasks, claimed, f"agent-{claimed.key}")
        assert await tasks.complete(claimed.id, claimed.attempt, outcomes[claimed.key][1])
    return await tasks.list_tasks(ticket_id, phase=phase)


async def test_recording_artifacts_is_idempotent_per_task_and_kind(
    pool: AsyncConnectionPool, gates: GateStore
) -> None:
    tasks = TaskStore(pool)
    ticket_id = await insert_ticket(pool, "INTEGRATION")
    done = await _done(
        tasks,
        ticket_id,
        "INTEGRATION",
        {
            "review": ("REVIEW_CODE", results.review()),
            "tests": ("RUN_PIPELINE", results.pipeline(status="failed", failed=2)),
            "verify": ("HEALTH_CHECK", results.health_check()),  # produces nothing lasting
        },
    )
    first = await gates.record_artifacts(ticket_id, "INTEGRATION", done)
    assert sorted((a.kind, a.task_key) for a in first) == [("review", "review"), ("test_report", "tests")]
    review = next(a for a in first if a.kind == "review")
    assert review.ticket_id == ticket_id and review.phase == "INTEGRATION" and review.attempt == 1
    assert review.agent == "agent-review" and review.reference == f"{results.BASE}..{results.COMMIT}"
    assert review.content == results.review() and review.created_at is not None

    again = await gates.record_artifacts(ticket_id, "INTEGRATION", done)
    assert [(a.id, a.created_at) for a in again] == [(a.id, a.created_at) for a in first]
    stored = await gates.artifacts(ticket_id)
    assert [a.id for a in stored] == [a.id for a in first]
    assert await gates.artifacts(ticket_id, phase="INTEGRATION#2") == []

    # Evaluated over what was stored: a failed gate, the review artifact found.
    outcome = evaluate(GATE, done, stored)
    assert outcome.verdict == "failed"
    assert outcome.reasons == ["tests: 2 failed (status failed, exit code 1)"]


async def test_a_retried_task_replaces_its_artifact_and_an_older_attempt_never_does(
    pool: AsyncConnectionPool, gates: GateStore
) -> None:
    tasks = TaskStore(pool)
    ticket_id = await insert_ticket(pool, "INTEGRATION")
    (first,) = await _done(tasks, ticket_id, "INTEGRATION", {"deploy": ("DEPLOY_SERVICE", results.deploy())})
    (recorded,) = await gates.record_artifacts(ticket_id, "INTEGRATION", [first])
    # A gate's `retry` runs the task again and its second attempt deploys another release. (retry_task
    # re-runs only tasks that did not succeed; how a succeeded one runs again is the workflow's
    # business, so its row is moved on here directly.)
    second = {**results.deploy(), "release_id": "r-20250101-0003"}
    await sql(
        pool,
        "UPDATE tasks SET attempt = 2, result = %s, assigned_agent = 'infrastructure-2' WHERE id = %s",
        Jsonb(second),
        first.id,
    )
    (retried,) = await tasks.list_tasks(ticket_id, phase="INTEGRATION")
    assert retried.attempt == 2

    (replaced,) = await gates.record_artifacts(ticket_id, "INTEGRATION", [retried])
    assert replaced.id == recorded.id
    assert (replaced.attempt, replaced.reference, replaced.agent) == (
        2,
        "r-20250101-0003",
        "infrastructure-2",
    )
    (stale,) = await gates.record_artifacts(
        ticket_id, "INTEGRATION", [first]
    )  # a late re-record of attempt 1
    assert (stale.attempt, stale.reference) == (2, "r-20250101-0003")
    assert len(await gates.artifacts(ticket_id)) == 1


async def test_content_is_bounded_and_deleting_the_task_keeps_the_artifact(
    pool: AsyncConnectionPool, gates: GateStore
) -> None:
    tasks = TaskStore(pool)
    ticket_id = await insert_ticket(pool, "REFACTORING")
    big = results.docs(markdown="# API\n" + "x" * (2 * MAX_CONTENT_BYTES))
    done = await _done(tasks, ticket_id, "REFACTORING", {"docs_api": ("GENERATE_DOCS", big)})
    (artifact,) = await gates.record_artifacts(ticket_id, "REFACTORING", done)
    assert artifact.content["truncated"] is True and artifact.kind == "document"
    (size,) = await sql(
        pool, "SELECT octet_length(content::text) AS n FROM phase_gate_artifacts WHERE id = %s", artifact.id
    )
    assert size["n"] < MAX_CONTENT_BYTES
    await sql(pool, "DELETE FROM tasks WHERE id = %s", done[0].id)
    (kept,) = await gates.artifacts(ticket_id)
    assert (kept.task_id, kept.task_key) == (None, "docs_api")


async def test_results_are_rows_in_order_and_failed_rounds_count_every_visit(
    pool: AsyncConnectionPool, gates: GateStore
) -> None:
    ticket_id = await insert_ticket(pool, "INTEGRATION")
    red = [results.task("tests", "RUN_PIPELINE", results.pipeline(status="failed", failed=1))]
    green = [results.task("tests", "RUN_PIPELINE", results.pipeline())]
    failed = evaluate(GATE, red, [])  # no review artifact either: two criteria fail
    waiting = evaluate(GATE, green, await _review_artifacts(gates, pool, ticket_id))
    assert (failed.verdict, waiting.verdict) == ("failed", "waiting")

    one = await gates.record_result(ticket_id, visit_label("INTEGRATION"), failed, "ticket-workflow")
    two = await gates.record_result(ticket_id, visit_label("INTEGRATION", 2), failed, "ticket-workflow")
    three = await gates.record_result(ticket_id, visit_label("INTEGRATION", 3), waiting, "ticket-workflow")
    assert (one.verdict, one.phase, one.evaluated_by) == ("failed", "INTEGRATION", "ticket-workflow")
    assert one.criteria == failed.criteria and one.reasons == failed.reasons
    assert one.evaluated_at <= two.evaluated_at <= three.evaluated_at

    listed = await gates.results(ticket_id)
    assert [r.id for r in listed] == [one.id, two.id, three.id]
    assert [r.phase for r in await gates.results(ticket_id, phase="INTEGRATION#2")] == ["INTEGRATION#2"]
    assert listed[2].criteria[2].passed is None  # the approval, waiting
    assert await gates.failed_rounds(ticket_id, "INTEGRATION") == 2
    assert await gates.failed_rounds(ticket_id, "IMPLEMENTATION") == 0
    assert await gates.failed_rounds(ticket_id, "INTEGRATIO") == 0


async def _review_artifacts(gates: GateStore, pool: AsyncConnectionPool, ticket_id: UUID) -> list:
    (done,) = await _done(
        TaskStore(pool), ticket_id, "INTEGRATION", {"review": ("REVIEW_CODE", results.review())}
    )
    return await gates.record_artifacts(ticket_id, "INTEGRATION", [done])


async def test_unknown_tickets_and_bad_arguments_are_named(
    pool: AsyncConnectionPool, gates: GateStore
) -> None:
    nobody = uuid4()
    passed = GateResult(verdict="passed", criteria=[])
    with pytest.raises(TicketNotFound):
        await gates.record_result(nobody, "INTEGRATION", passed, "tester")
    with pytest.raises(TicketNotFound):
        await gates.results(nobody)
    with pytest.raises(TicketNotFound):
        await gates.artifacts(nobody)
    with pytest.raises(TicketNotFound):
        await gates.record_artifacts(nobody, "INTEGRATION", [])

    ticket_id = await insert_ticket(pool, "INTEGRATION")
    other = await insert_ticket(pool, "INTEGRATION")
    (foreign,) = await _done(
        TaskStore(pool), other, "INTEGRATION", {"review": ("REVIEW_CODE", results.review())}
    )
    with pytest.raises(TicketArgumentError) as refused:
        await gates.record_artifacts(ticket_id, "INTEGRATION", [foreign])
    assert refused.value.field == "task_id" and f"no task {foreign.id} of ticket {ticket_id}" in str(
        refused.value
    )

    failing = evaluate(GATE, [], [])
    lying = GateResult(verdict="passed", criteria=failing.criteria)
    with pytest.raises(TicketArgumentError) as disagrees:
        await gates.record_result(ticket_id, "INTEGRATION", lying, "tester")
    assert disagrees.value.field == "verdict" and "disagrees with the criteria" in str(disagrees.value)
    for phase, by, field in (
        ("", "tester", "phase"),
        ("INTEGRATION", " ", "evaluated_by"),
        ("X" * 101, "t", "phase"),
    ):
        with pytest.raises(TicketArgumentError) as bad:
            await gates.record_result(ticket_id, phase, passed, by)
        assert bad.value.field == field


async def test_the_procedures_check_what_python_does_not_send(pool: AsyncConnectionPool) -> None:
    ticket_id = await insert_ticket(pool, "INTEGRATION")
    (task,) = await _done(
        TaskStore(pool), ticket_id, "INTEGRATION", {"tests": ("RUN_PIPELINE", results.pipeline())}
    )
    cases: list[tuple[Any, str]] = [
        ([{"kind": "binary", "task_id": str(task.id)}], "kind"),
        ([{"kind": "review"}], "task_id"),
        ([{"kind": "review", "task_id": str(task.id), "attempt": "2"}], "attempt"),
        ([{"kind": "review", "task_id": str(task.id), "attempt": -1}], "attempt"),
        ([{"kind": "review", "task_id": str(task.id), "reference": 7}], "reference"),
        ({"kind": "review"}, "artifacts"),
    ]
    for items, field in cases:
        async with pool.connection() as conn:
            with pytest.raises(psycopg.Error) as failed:
                await conn.execute(
                    "SELECT * FROM record_gate_artifacts(%s, %s, %s)", (ticket_id, "I", Jsonb(items))
                )
        assert (failed.value.sqlstate, failed.value.diag.column_name) == ("DT001", field), items
    async with pool.connection() as conn:
        with pytest.raises(psycopg.Error) as bad_criteria:
            await conn.execute(
                "SELECT * FROM record_gate_result(%s, 'I', %s, 'passed', 't')",
                (ticket_id, Jsonb([{"kind": "tasks", "passed": True}])),
            )
    assert (bad_criteria.value.sqlstate, bad_criteria.value.diag.column_name) == ("DT001", "criteria")
