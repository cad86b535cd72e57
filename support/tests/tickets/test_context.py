"""Context passing: phase aggregation from the agents' real result models, the bounded summary (budget,
ranking, the dropped note), the LLM prose with scripted models (and its failure), and the store's
several-keys update with its version on real PostgreSQL."""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel, GenericFakeChatModel

from agent_orchestrator.tasks import ErrorClass, Task, TaskStatus
from agent_orchestrator.tickets import (
    SECTIONS_KEY,
    SUMMARY_KEY,
    StaleVersion,
    Ticket,
    TicketArgumentError,
    TicketCreate,
    TicketStore,
    aggregate_phase,
    context_update_for_phase,
    merge_phase,
    resolve,
    summarize,
    template_variables,
)
from agent_orchestrator.tickets.context import MAX_ENTRIES, MAX_PHASES, MIN_SUMMARY_CHARS
from agent_orchestrator.tickets.context_sections import MAX_LIST, MAX_LOG_TAIL, MAX_TEXT
from services.cicd.pipeline import PipelineResult
from services.code_review.models import Finding, ReviewResult, ReviewStats, VerdictDecision
from services.documentation.models import GenerateDocsResult
from services.feature_dev.models import ChangeResult
from services.infrastructure.contract import DeployResult
from shared.db import open_pool
from support.tests.tickets.helpers import make_ticket

BASE, HEAD = "a" * 40, "b" * 40
START = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), default=str))


# A task row's fields that are null for a finished task, and what every test task shares.
NULL_FIELDS = ("claimed_by", "lease_expires_at", "deadline_at", "error", "error_class", "error_kind")
NULL_FIELDS += ("blocked_reason", "wait_reason")


def task(key: str, request_type: str, result: Any = None, **fields: Any) -> Task:
    """A finished task as the store returns it; `minutes` orders them in time."""
    finished = START + timedelta(minutes=fields.pop("minutes", 0))
    row = dict.fromkeys(NULL_FIELDS) | {"id": uuid4(), "ticket_id": uuid4(), "phase": "INTEGRATION"}
    row |= {"key": key, "title": key, "capability": "x", "request_type": request_type, "payload": {}}
    row |= {"priority": 0, "depends_on": [], "locks": [], "status": TaskStatus.SUCCEEDED, "attempt": 1}
    row |= {"failures": 0, "max_attempts": 3, "timeout_seconds": 600, "assigned_agent": f"{key}-agent"}
    row |= {"cancel_requested": False, "result": result, "not_before": START, "created_at": START}
    row |= {"started_at": START, "updated_at": finished, "finished_at": finished}
    return Task.model_validate(row | fields)


# Results built with the agents' own models, as they answer (model_dump(mode="json")).


def review(verdict: str = "request_changes", findings: int = 3) -> dict[str, Any]:
    kinds = [("error", "secret", "S001"), ("warning", "lint", "F401"), ("info", "tests", "T001")]
    found = [
        Finding.model_validate(
            {"file": f"app/f{i}.py", "line": i + 1, "rule": kinds[i % 3][2], "message": f"finding {i}"}
            | {"severity": kinds[i % 3][0], "category": kinds[i % 3][1]}
        )
        for i in range(findings)
    ]
    stats = ReviewStats(files_changed=2, lines_added=10, lines_deleted=1, python_files_linted=2)
    decided = VerdictDecision.model_validate({"verdict": verdict, "rule": "secrets", "reason": "a secret"})
    fields = {"repo": "/srv/shop", "base_commit": BASE, "head_commit": HEAD, "verdict": verdict}
    fields |= {"decided_by": decided, "findings": found, "stats": stats, "summary": "request changes"}
    return ReviewResult.model_validate(fields).model_dump(mode="json")


def pipeline(status: str = "failed", log: str = "ok\n") -> dict[str, Any]:
    failed = 0 if status == "passed" else 2
    fields = {"run_id": "r1", "status": status, "repo": "/srv/shop", "ref": HEAD, "commit": HEAD}
    fields |= {"command": "python -m pytest", "command_source": "detected:pytest", "timed_out": False}
    fields |= {"exit_code": int(failed > 0), "passed": 10, "failed": failed, "skipped": 1, "errors": 0}
    fields |= {"total": 11 + failed, "counts_source": "junit", "duration_seconds": 3.25, "log_tail": log}
    fields |= {"log_path": "/data/pipelines/r1/log.txt"}
    return PipelineResult.model_validate(fields).model_dump(mode="json")


def deploy(status: str = "deployed") -> dict[str, Any]:
    release = "20250101T120000-bbbbbbbb-1a2b"
    health = {"environment": "staging", "status": "up", "healthy": True, "release_id": release}
    health |= {"url": "http://127.0.0.1:9001/health", "http_status": 200, "http_error": None, "pid": 42}
    health |= {"process_alive": True, "port": 9001, "error_lines": [], "reason": None, "checked_at": "now"}
    fields = {"environment": "staging", "status": status, "release_id": release, "active_release": release}
    fields |= {"previous_release": None, "message": status, "health": health, "duration_seconds": 2.5}
    fields |= {"failure_reason": None if status == "deployed" else "health check failed"}
    return DeployResult.model_validate(fields).model_dump(mode="json")


def change(files: int = 2) -> dict[str, Any]:
    fields = {"kind": "generate", "outcome": "committed", "repo": "/srv/shop", "base_ref": "main"}
    fields |= {"base_commit": BASE, "branch": "devtools/generate-health", "commit": HEAD, "deletions": 0}
    fields |= {"files_changed": files, "insertions": 3 * files, "model": "openai:gpt-4o-mini"}
    added = [{"path": f"app/m{i}.py", "status": "A", "insertions": 3, "deletions": 0} for i in range(files)]
    fields |= {"files": added}
    return ChangeResult.model_validate(fields).model_dump(mode="json")


def docs() -> dict[str, Any]:
    fields = {"repo": "/srv/shop", "doc_type": "api", "ref": HEAD, "commit": HEAD}
    fields |= {"markdown": "# API reference of shop\n\n## app\n", "sources": ["app/a.py", "app/b.py"]}
    return GenerateDocsResult.model_validate(fields).model_dump(mode="json")


VERIFY_FAILED = {"error": "staging is down: connection refused", "error_class": ErrorClass.RETRYABLE}
VERIFY_FAILED |= {"error_kind": "infrastructure"}


def integration_tasks() -> list[Task]:
    return [
        task("review", "REVIEW_CODE", review(), minutes=1),
        task("tests", "RUN_PIPELINE", pipeline("failed", "x" * 5000 + "FAILED test_health"), minutes=2),
        task("deploy", "DEPLOY_SERVICE", deploy(), payload={"ref": HEAD}, minutes=3),
        task("verify", "HEALTH_CHECK", status=TaskStatus.FAILED, attempt=3, minutes=4, **VERIFY_FAILED),
    ]


# -- aggregation --------------------------------------------------------------------------------------


@pytest.mark.unit
def test_a_phase_is_aggregated_into_sections_from_real_results() -> None:
    tasks = [
        *integration_tasks(),
        task("implement", "GENERATE_CODE", change(), minutes=5),
        task("docs_api", "GENERATE_DOCS", docs(), minutes=6),
    ]
    aggregate = aggregate_phase("INTEGRATION", tasks)
    sections = aggregate["sections"]
    assert aggregate["phase"] == "INTEGRATION" and aggregate["truncated"] == {}
    assert aggregate["tasks"] == {"total": 6, "by_status": {"failed": 1, "succeeded": 5}}
    assert [r["task"] for r in aggregate["roster"]] == [t.key for t in tasks]

    [verdict] = sections["decisions"]
    assert verdict["kind"] == "review_verdict" and verdict["decision"] == "request_changes"
    assert verdict["rule"] == "secrets" and verdict["head_commit"] == HEAD and verdict["findings"] == 3
    assert verdict["severity"] == "warning"
    findings = sections["review_findings"]
    assert [(f["file"], f["line"], f["rule"], f["severity"]) for f in findings] == [
        ("app/f0.py", 1, "S001", "error"),
        ("app/f1.py", 2, "F401", "warning"),
        ("app/f2.py", 3, "T001", "info"),
    ]
    assert findings[0]["message"] == "finding 0" and findings[0]["category"] == "secret"

    [tests] = sections["test_results"]
    assert tests["status"] == "failed" and tests["failed"] == 2 and tests["total"] == 13
    assert tests["failure"] is True and tests["severity"] == "error" and tests["commit"] == HEAD
    assert len(tests["log_tail"]) == MAX_LOG_TAIL and tests["log_tail"].endswith("FAILED test_health")

    [deployment] = sections["deployments"]
    assert deployment["environment"] == "staging" and deployment["release"] == "20250101T120000-bbbbbbbb-1a2b"
    assert deployment["commit"] == HEAD and deployment["url"] == "http://127.0.0.1:9001/health"
    assert deployment["healthy"] is True and deployment["failure"] is False

    [question] = sections["open_questions"]
    assert question["task"] == "verify" and question["status"] == "failed" and question["failure"] is True
    assert question["error"] == "staging is down: connection refused"
    assert question["error_class"] == "retryable" and question["error_kind"] == "infrastructure"
    assert "after attempt 3 of 3" in question["question"]

    [changed] = sections["files_changed"]
    assert changed["branch"] == "devtools/generate-health" and changed["commit"] == HEAD
    assert [f["path"] for f in changed["files"]] == ["app/m0.py", "app/m1.py"]
    [document] = sections["documents"]
    assert document["doc_type"] == "api" and document["title"] == "API reference of shop"
    assert document["commit"] == HEAD and document["sources"] == 2

    by_key = {t.key: t for t in tasks}
    for entries in sections.values():
        for entry in entries:
            source = by_key[entry["task"]]
            assert entry["task_id"] == str(source.id) and entry["agent"] == f"{source.key}-agent"
            assert entry["phase"] == "INTEGRATION" and entry["at"] == source.finished_at.isoformat()  # type: ignore[union-attr]


@pytest.mark.unit
def test_passing_work_is_no_failure_and_carries_no_log() -> None:
    aggregate = aggregate_phase(
        "INTEGRATION",
        [
            task("tests", "RUN_PIPELINE", pipeline("passed", "all good")),
            task("review", "REVIEW_CODE", review("approve", findings=0)),
        ],
    )
    [tests] = aggregate["sections"]["test_results"]
    assert tests["failure"] is False and tests["severity"] == "info" and "log_tail" not in tests
    assert aggregate["sections"]["decisions"][0]["severity"] == "info"
    assert aggregate["sections"]["review_findings"] == []


@pytest.mark.unit
def test_a_rolled_back_deploy_and_a_cancelled_task_are_failures() -> None:
    aggregate = aggregate_phase(
        "INTEGRATION",
        [
            task("deploy", "DEPLOY_SERVICE", deploy("rolled_back"), payload={"ref": "feature/x"}),
            task("docs", "GENERATE_DOCS", status=TaskStatus.CANCELLED, blocked_reason=None, error=None),
        ],
    )
    [deployment] = aggregate["sections"]["deployments"]
    assert deployment["failure"] is True and deployment["failure_reason"] == "health check failed"
    assert deployment["commit"] == "feature/x"  # no artifact: the ref the task deployed
    [question] = aggregate["sections"]["open_questions"]
    assert question["severity"] == "warning" and question["error"] == "no error was recorded"


@pytest.mark.unit
def test_everything_is_bounded() -> None:
    long = "y" * 10_000
    result = review(findings=MAX_ENTRIES + 30)
    result["findings"][-1]["severity"] = "error"  # the last finding is an error: it must be kept
    result["findings"][0]["message"] = long
    tasks = [
        task("review", "REVIEW_CODE", result),
        task("implement", "GENERATE_CODE", change(files=MAX_LIST + 10)),
        task("broken", "RUN_PIPELINE", status=TaskStatus.FAILED, error=long),
    ]
    aggregate = aggregate_phase("INTEGRATION", tasks)
    findings = aggregate["sections"]["review_findings"]
    assert len(findings) == MAX_ENTRIES and aggregate["truncated"] == {"review_findings": 30}
    assert findings[-1]["file"] == f"app/f{MAX_ENTRIES + 29}.py"  # errors outrank infos; order kept
    assert max(len(f["message"]) for f in findings) == MAX_TEXT
    [changed] = aggregate["sections"]["files_changed"]
    assert len(changed["files"]) == MAX_LIST and changed["files_omitted"] == 10
    assert len(aggregate["sections"]["open_questions"][0]["error"]) == MAX_TEXT


@pytest.mark.unit
def test_results_of_unexpected_shapes_cost_only_their_entries() -> None:
    odd = review()
    odd["findings"] = {"not": "a list"}
    odd["decided_by"] = "approve"
    aggregate = aggregate_phase(
        "X",
        [
            task("review", "REVIEW_CODE", odd),
            task("tests", "RUN_PIPELINE", "not an object"),
            task("status", "GET_STATUS", {"agent_id": "x"}),  # nothing to aggregate from a status
            task("deploy", "DEPLOY_SERVICE", {"status": "deployed", "health": [1, 2]}),
        ],
    )
    sections = aggregate["sections"]
    assert sections["decisions"][0]["findings"] == 0 and "rule" not in sections["decisions"][0]
    assert sections["review_findings"] == [] and sections["test_results"] == []
    assert sections["deployments"][0]["status"] == "deployed" and "url" not in sections["deployments"][0]


@pytest.mark.unit
def test_phases_merge_most_recent_last_and_stay_bounded() -> None:
    sections: dict[str, Any] = {}
    for name in ["P1", "P2", "P1"]:  # P1 ran again (after BLOCKED): its new aggregate replaces the old
        sections = merge_phase(sections, aggregate_phase(name, [task(name.lower(), "GENERATE_DOCS", docs())]))
    assert sections["order"] == ["P2", "P1"] and set(sections["phases"]) == {"P1", "P2"}
    for i in range(MAX_PHASES + 3):
        sections = merge_phase(sections, aggregate_phase(f"Q{i}", []))
    assert len(sections["order"]) == MAX_PHASES and sections["order"][-1] == f"Q{MAX_PHASES + 2}"


# -- summary ------------------------------------------------------------------------------------------


@functools.cache
def _two_phases() -> str:
    sections = merge_phase(
        None,
        aggregate_phase(
            "INITIAL",
            [task("outline", "GENERATE_DOCS", docs()), task("baseline", "RUN_PIPELINE", pipeline("passed"))],
        ),
    )
    many = review(findings=60)
    integration = [*integration_tasks()[1:], task("review", "REVIEW_CODE", many)]
    return json.dumps(merge_phase(sections, aggregate_phase("INTEGRATION", integration)))


def two_phases() -> dict[str, Any]:
    """The same two phases every time (task ids included), as stored: JSON."""
    return json.loads(_two_phases())  # type: ignore[no-any-return]


@pytest.mark.unit
def test_a_large_budget_keeps_everything_ranked() -> None:
    summary = summarize(two_phases(), 100_000)
    assert summary["dropped"] == {} and summary["note"] is None and summary["phase"] == "INTEGRATION"
    assert summary["counts"]["review_findings"] == 60
    assert summary["sections"]["test_results"][0]["status"] == "failed"  # the failure before the pass
    assert summary["sections"]["test_results"][1]["status"] == "passed"
    severities = [f["severity"] for f in summary["sections"]["review_findings"]]
    assert severities == sorted(severities, key=["error", "warning", "info"].index)


@pytest.mark.unit
@pytest.mark.parametrize("budget", [MIN_SUMMARY_CHARS, 5000, 8000])
def test_the_budget_keeps_failures_and_decisions_and_notes_what_was_dropped(budget: int) -> None:
    sections = two_phases()
    summary = summarize(sections, budget)
    assert _size(summary) <= budget
    kept = summary["sections"]
    assert [e["task"] for e in kept["open_questions"]] == ["verify"]
    assert kept["test_results"][0]["failure"] is True and kept["decisions"][0]["kind"] == "review_verdict"
    # What each task produced (the staging deploy and its URL) comes before the findings.
    assert kept["deployments"][0]["url"] == "http://127.0.0.1:9001/health"
    assert summary["dropped"]["review_findings"] > 0, "a budget this small cannot hold 60 findings"
    for name, total in summary["counts"].items():
        assert len(kept[name]) + summary["dropped"].get(name, 0) == total
    note = summary["note"]
    assert f"to stay within {budget} characters" in note and SECTIONS_KEY in note
    for name, count in summary["dropped"].items():
        assert f"{count} {name}" in note
    # What is kept is a prefix of the ranking: no info finding while an error finding was dropped.
    if summary["dropped"].get("review_findings"):
        assert all(f["severity"] != "info" for f in kept["review_findings"])


@pytest.mark.unit
def test_the_summary_is_deterministic_and_refuses_unbounded_budgets() -> None:
    sections = two_phases()
    assert summarize(sections, 4000) == summarize(json.loads(json.dumps(sections)), 4000)
    with pytest.raises(ValueError, match="max_chars"):
        summarize(sections, 100)
    one_phase = aggregate_phase("X", [task("docs", "GENERATE_DOCS", docs())])
    assert summarize(one_phase)["sections"]["documents"][0]["task"] == "docs"


@pytest.mark.unit
def test_notes_are_carried_and_give_way_to_the_budget() -> None:
    summary = summarize(two_phases(), 6000, notes="é" * 5000)
    assert _size(summary) <= 6000 and summary["notes"].startswith("éé") and summary["notes"].endswith("…")
    assert summarize(two_phases(), 6000, notes="check the flaky test")["notes"] == "check the flaky test"


class Recording(FakeListChatModel):
    """A scripted model that keeps what it was asked."""

    seen: list[str] = []

    def _call(self, messages, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.seen.append(str(messages[0].content) + "\n" + str(messages[-1].content))
        return super()._call(messages, *args, **kwargs)


@pytest.mark.unit
def test_an_llm_writes_prose_on_top_of_the_deterministic_summary() -> None:
    model = Recording(responses=["Tests fail on staging; verify could not reach it."], seen=[])
    summary = summarize(two_phases(), 6000, chat_model=model)
    assert summary["prose"] == "Tests fail on staging; verify could not reach it."
    assert summary["prose_warning"] is None and _size(summary) <= 6000
    [asked] = model.seen
    assert "at most" in asked and "staging is down: connection refused" in asked  # the failures are sent
    # The deterministic part leaves a quarter of the budget to the prose.
    assert summary["sections"] == summarize(two_phases(), 6000 - 1500)["sections"]


@pytest.mark.unit
def test_long_prose_is_cut_to_the_budget() -> None:
    summary = summarize(two_phases(), 4000, chat_model=FakeListChatModel(responses=["word " * 2000]))
    assert summary["prose"].endswith("…") and _size(summary) <= 4000


@pytest.mark.unit
def test_a_failing_model_costs_the_prose_only() -> None:
    working = summarize(two_phases(), 6000, chat_model=FakeListChatModel(responses=["fine"]))
    failing = summarize(two_phases(), 6000, chat_model=GenericFakeChatModel(messages=iter([])))
    assert failing["prose"] is None and failing["prose_warning"].startswith(
        "no LLM prose: the model call failed"
    )
    assert {k: v for k, v in failing.items() if not k.startswith("prose")} == {
        k: v for k, v in working.items() if not k.startswith("prose")
    }
    assert _size(failing) <= 6000


# -- what the workflow stores, on real PostgreSQL -------------------------------------------------------


@pytest.mark.unit
def test_the_update_for_a_phase_keeps_results_and_adds_the_reserved_keys() -> None:
    ticket = make_ticket(context={"change": {"head_commit": HEAD}, "notes": "staging is flaky on Mondays"})
    tasks = integration_tasks()
    update = context_update_for_phase(ticket, "INTEGRATION", tasks)
    assert set(update) == {"review", "tests", "deploy", SECTIONS_KEY, SUMMARY_KEY}  # verify failed: no result
    assert update["review"] == tasks[0].result
    assert update[SECTIONS_KEY]["order"] == ["INTEGRATION"]
    assert update[SUMMARY_KEY]["notes"] == "staging is flaky on Mondays"


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[TicketStore]:
    pool = await open_pool(database_url, min_size=1, max_size=2, name="context-tests")
    try:
        yield TicketStore(pool)
    finally:
        await pool.close()


async def _ticket(store: TicketStore) -> Ticket:
    create = {"title": "Add a health endpoint", "repo": {"path": "/srv/shop"}, "created_by": "alice"}
    return await store.create(TicketCreate.model_validate(create))


@pytest.mark.integration
async def test_several_keys_change_in_one_version(store: TicketStore) -> None:
    ticket = await _ticket(store)
    first = await store.update_context(
        ticket.id, {"a": 1, "b": [1, 2], "notes": "n"}, expected_version=ticket.version
    )
    assert first.version == ticket.version + 1 and first.context == {"a": 1, "b": [1, 2], "notes": "n"}
    second = await store.update_context(ticket.id, {"c": None}, ["a", "b"], expected_version=first.version)
    assert second.version == first.version + 1 and second.context == {"notes": "n", "c": None}

    with pytest.raises(StaleVersion) as stale:
        await store.update_context(ticket.id, {"d": 1}, ["notes"], expected_version=first.version)
    assert stale.value.current_version == second.version
    assert (await store.get(ticket.id)).context == second.context  # nothing changed


@pytest.mark.integration
@pytest.mark.parametrize(
    ("values", "remove", "field"),
    [
        ({SUMMARY_KEY: {}}, [], f"set.{SUMMARY_KEY}"),
        ({}, ["_sections"], "remove[0]"),
        ({"a.b": 1}, [], "set.a.b"),
        ({}, ["missing"], "remove[0]"),
        ({"a": 1}, ["a"], "remove[0]"),
        ({}, [], "set"),
    ],
)
async def test_bad_keys_are_named(
    store: TicketStore, values: dict[str, Any], remove: list[str], field: str
) -> None:
    ticket = await _ticket(store)
    with pytest.raises(TicketArgumentError) as bad:
        await store.update_context(ticket.id, values, remove, expected_version=ticket.version)
    assert bad.value.field == field
    assert (await store.get(ticket.id)).version == ticket.version


@pytest.mark.integration
async def test_the_workflow_writes_a_phase_and_templates_read_it(store: TicketStore) -> None:
    ticket = await _ticket(store)
    update = context_update_for_phase(ticket, "INTEGRATION", integration_tasks())
    stored = await store.update_context(
        ticket.id, update, expected_version=ticket.version, allow_reserved=True
    )
    assert stored.version == ticket.version + 1 and stored.context[SUMMARY_KEY] == update[SUMMARY_KEY]
    variables = template_variables(stored)
    # The task results keep their placeholders; the summary is reachable the same way.
    assert resolve("{context.review.verdict} at {context.deploy.release_id}", variables) == (
        "request_changes at 20250101T120000-bbbbbbbb-1a2b"
    )
    assert resolve("{context._summary.sections.open_questions.0.task}", variables) == "verify"

    again = context_update_for_phase(stored, "REFACTORING", [task("docs_api", "GENERATE_DOCS", docs())])
    latest = await store.update_context(
        ticket.id, again, expected_version=stored.version, allow_reserved=True
    )
    assert latest.context[SECTIONS_KEY]["order"] == ["INTEGRATION", "REFACTORING"]
    assert latest.context[SUMMARY_KEY]["phase"] == "REFACTORING"
    assert latest.context["review"] == stored.context["review"]  # earlier phases' results stay
