"""Expanding patterns into plans, rendering what comes later, loop rounds, and the events: the three
shipped patterns driven with crafted results, as the ticket workflow will drive them."""

from __future__ import annotations

import re
import shutil
import textwrap
from pathlib import Path

import pytest

from agent_orchestrator.coordination import (
    PATTERNS_DIR,
    CoordinationArgumentError,
    CoordinationError,
    DeferredAction,
    JoinAction,
    LoopAction,
    MergeAction,
    Pattern,
    PatternPlan,
    SyncAction,
    TemplateError,
    coordination_event,
    expand,
    join,
    load_patterns,
    loop_decision,
    merge,
    render_deferred,
    render_round,
    results_of,
)
from agent_orchestrator.tasks import validate_batch
from support.tests.coordination.helpers import VARIABLES, review, task

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def library() -> dict[str, Pattern]:
    return load_patterns()


def _merge(action: MergeAction, results: dict[str, object]) -> object:
    return merge(
        {k: results.get(k) for k in action.of},
        action.strategy,
        field=action.field,
        key=action.identity,
        tie_breaker=action.tie_breaker,
        severity_order=action.severity_order,
    )


def test_majority_vote_expands_to_n_reviews_a_join_and_the_merges(library: dict[str, Pattern]) -> None:
    plan = expand(
        library["majority_vote"], {"head": "{context.change.head_commit}"}, VARIABLES, library=library
    )
    assert [t.key for t in plan.tasks] == ["review.1", "review.2", "review.3"]
    assert plan.tasks[0].payload == {
        "repo": "/srv/repo",
        "base": "main",
        "head": "abc123",
        "complexity_threshold": 10,
    }
    assert {t.capability for t in plan.tasks} == {"code_review"}
    assert validate_batch(plan.tasks) == ["review.1", "review.2", "review.3"]
    joined, verdict, findings = plan.actions
    assert (
        isinstance(joined, JoinAction)
        and joined.of == ["review.1", "review.2", "review.3"]
        and joined.mode == "all"
    )
    assert (
        isinstance(verdict, MergeAction)
        and verdict.after == ["reviewed"]
        and verdict.tie_breaker == "most_severe"
    )
    assert isinstance(findings, MergeAction) and findings.identity == ["file", "line", "rule"]
    assert plan.result == "verdict"
    assert [(s.key, s.parts, s.source) for s in plan.splits] == [
        ("review", ["review.1", "review.2", "review.3"], "count")
    ]


def test_majority_vote_with_one_dissent_gives_the_majority_verdict(library: dict[str, Pattern]) -> None:
    plan = expand(library["majority_vote"], {"head": "feature"}, VARIABLES, library=library)
    joined, verdict, findings = plan.actions
    rows = [
        task("review.1", "succeeded", review("approve", ("a.py", 1, "F401"))),
        task(
            "review.2",
            "succeeded",
            review("request_changes", ("a.py", 1, "F401"), ("s.py", 2, "private-key")),
        ),
        task("review.3", "succeeded", review("approve")),
    ]
    assert join(rows, joined.mode).status == "ready"
    results = results_of(rows, verdict.of)
    decided = _merge(verdict, results)
    assert decided.value == "approve" and decided.tie is None
    union = _merge(findings, results)
    assert [f["rule"] for f in union.value] == ["F401", "private-key"]
    event = coordination_event(plan.pattern, verdict.key, decided)
    assert event.run_event_kind == "coordination_merge"
    assert event.data()["status"] == "decided" and event.data()["value"] == "approve"


def test_a_two_reviewer_tie_is_reported_and_resolved_by_the_declared_tie_breaker(
    library: dict[str, Pattern],
) -> None:
    plan = expand(library["majority_vote"], {"head": "feature", "reviewers": 2}, VARIABLES, library=library)
    verdict = plan.actions[1]
    assert isinstance(verdict, MergeAction)
    results = {"review.1": review("approve"), "review.2": review("comment")}
    decided = _merge(verdict, results)
    assert decided.tie is not None and decided.tie.leaders == ["approve", "comment"]
    assert decided.value == "comment" and decided.tie_breaker == "most_severe"
    data = coordination_event(plan.pattern, verdict.key, decided).data()
    assert data["tie"]["votes_cast"] == 2 and data["resolution"].startswith("tie resolved by most_severe")


def test_parameters_are_checked_when_expanding(library: dict[str, Pattern]) -> None:
    vote = library["majority_vote"]
    with pytest.raises(CoordinationArgumentError) as caught:
        expand(vote, {"head": "x", "reviewers": 12}, VARIABLES, library=library)
    assert caught.value.field == "params.reviewers" and "more than the maximum 9" in str(caught.value)
    with pytest.raises(CoordinationArgumentError, match="has no parameter 'voters'"):
        expand(vote, {"head": "x", "voters": 3}, VARIABLES, library=library)
    with pytest.raises(
        CoordinationArgumentError, match=re.escape("params.head: pattern majority_vote needs this parameter")
    ):
        expand(vote, {}, VARIABLES, library=library)
    with pytest.raises(TemplateError, match="context has no 'review'"):
        expand(vote, {"head": "{context.review.head_commit}"}, VARIABLES, library=library)


def test_parallel_implementation_splits_by_module_then_merges_and_tests(library: dict[str, Pattern]) -> None:
    files = ["app/a.py", "app/b.py", "docs/guide.md", "tests/test_a.py"]
    params = {"instruction": "Greet people", "files": files, "parts": 2}
    plan = expand(library["parallel_implementation"], params, VARIABLES, library=library)
    assert [(t.key, t.payload["files"], t.payload["branch"]) for t in plan.tasks] == [
        ("implement.1", ["app/a.py", "app/b.py"], "devtools/ticket-t-1-part1"),
        ("implement.2", ["docs/guide.md", "tests/test_a.py"], "devtools/ticket-t-1-part2"),
    ]
    assert "part 2 of 2" in plan.tasks[1].payload["instruction"]
    assert plan.splits[0].by == "module" and plan.splits[0].source == "files"
    joined, branches, integrate, tests = plan.actions
    assert isinstance(joined, JoinAction) and isinstance(branches, MergeAction)
    assert isinstance(integrate, DeferredAction) and integrate.after == ["branches"]
    assert isinstance(tests, DeferredAction) and tests.after == ["integrate"]
    assert plan.result == "tests"

    results: dict[str, object] = {"implement.1": {"branch": "p1"}, "implement.2": {"branch": "p2"}}
    with pytest.raises(TemplateError) as missing:
        render_deferred(integrate, VARIABLES, results, library=library)
    assert missing.value.placeholder == "{steps.branches.value}"
    results["branches"] = _merge(branches, results).model_dump(mode="json")
    merged = render_deferred(integrate, VARIABLES, results, library=library)
    assert [t.key for t in merged.tasks] == ["integrate"] and merged.tasks[0].depends_on == []
    assert '{"implement.1": "p1", "implement.2": "p2"}' in merged.tasks[0].payload["instruction"]
    results["integrate"] = {"branch": "devtools/ticket-t-1", "commit": "c0ffee"}
    tested = render_deferred(tests, VARIABLES, results, library=library)
    assert tested.tasks[0].payload == {
        "repo": "/srv/repo",
        "ref": "devtools/ticket-t-1",
        "require_pass": True,
        "coverage_base": "main",
    }
    assert tested.result == "tests"


def test_parallel_implementation_by_file_makes_at_most_the_parts_asked(library: dict[str, Pattern]) -> None:
    params = {"instruction": "x", "files": ["a.py", "b.py", "c.py"], "split_by": "file", "parts": 5}
    plan = expand(library["parallel_implementation"], params, VARIABLES, library=library)
    assert [t.payload["files"] for t in plan.tasks] == [["a.py"], ["b.py"], ["c.py"]]
    with pytest.raises(CoordinationArgumentError, match="'folder' is not one of file, module"):
        expand(
            library["parallel_implementation"], {**params, "split_by": "folder"}, VARIABLES, library=library
        )


def test_review_feedback_loop_feeds_the_findings_back_until_approve(library: dict[str, Pattern]) -> None:
    plan = expand(
        library["review_feedback_loop"], {"instruction": "Greet people"}, VARIABLES, library=library
    )
    assert plan.tasks == [] and plan.result == "rounds"
    (loop,) = plan.actions
    assert isinstance(loop, LoopAction) and loop.max_rounds == 3

    first = render_round(loop, 1, VARIABLES, {}, library=library)
    implement, check = first.tasks
    assert (implement.key, check.key) == ("rounds-r1-implement", "rounds-r1-review")
    assert implement.payload["base_ref"] == "main" and implement.payload["branch"] == "devtools/ticket-t-1-r1"
    assert check.bindings == {"head": "rounds-r1-implement.branch"} and check.depends_on == [
        "rounds-r1-implement"
    ]
    assert "head" not in check.payload  # filled by the dispatcher from the implementation's result
    validate_batch(first.tasks)

    results: dict[str, object] = {
        "rounds-r1-implement": {"branch": "devtools/ticket-t-1-r1"},
        "rounds-r1-review": review("request_changes", ("app.py", 3, "F821")),
    }
    decision = loop_decision(loop, 1, results)
    assert (decision.status, decision.next_round, decision.value) == ("continue", 2, "request_changes")
    second = render_round(loop, 2, VARIABLES, results, library=library)
    assert second.tasks[0].payload["base_ref"] == "devtools/ticket-t-1-r1"
    assert '"rule": "F821"' in second.tasks[0].payload["instruction"]
    results |= {
        "rounds-r2-implement": {"branch": "devtools/ticket-t-1-r2"},
        "rounds-r2-review": review("approve"),
    }
    done = loop_decision(loop, 2, results)
    assert (done.status, done.result_key) == ("done", "rounds-r2-implement")
    assert coordination_event(plan.pattern, loop.key, done).data()["status"] == "done"


def test_the_loop_ends_after_max_rounds_and_fails_without_a_result(library: dict[str, Pattern]) -> None:
    plan = expand(
        library["review_feedback_loop"], {"instruction": "x", "max_rounds": 1}, VARIABLES, library=library
    )
    loop = plan.actions[0]
    assert isinstance(loop, LoopAction)
    exhausted = loop_decision(loop, 1, {"rounds-r1-review": review("comment")})
    assert exhausted.status == "exhausted" and '1 rounds and review.verdict is "comment"' in exhausted.reason
    assert loop_decision(loop, 1, {}).status == "failed"
    with pytest.raises(CoordinationArgumentError, match=re.escape("rounds 1..1")):
        render_round(loop, 2, VARIABLES, {}, library=library)


def test_a_round_without_a_branch_cannot_carry_it_on(library: dict[str, Pattern]) -> None:
    plan = expand(library["review_feedback_loop"], {"instruction": "x"}, VARIABLES, library=library)
    loop = plan.actions[0]
    assert isinstance(loop, LoopAction)
    results = {
        "rounds-r1-implement": {"branch": None, "outcome": "no_change"},
        "rounds-r1-review": review("comment"),
    }
    with pytest.raises(
        CoordinationError, match=re.escape("carry base_ref <- implement.branch: round 1 recorded no branch")
    ):
        render_round(loop, 2, VARIABLES, results, library=library)


def _library_with(tmp_path: Path, name: str, body: str) -> dict[str, Pattern]:
    shutil.copy(PATTERNS_DIR / "majority_vote.pattern.yaml", tmp_path)
    (tmp_path / f"{name}.pattern.yaml").write_text(textwrap.dedent(body), encoding="utf-8")
    return load_patterns(tmp_path)


def test_a_used_pattern_is_inlined_under_its_step_key(tmp_path: Path) -> None:
    library = _library_with(
        tmp_path,
        "checked",
        """\
        name: checked
        parameters: {head: {type: string}}
        result: vote
        steps:
          - key: build
            capability: cicd
            request_type: VALIDATE_BUILD
            payload: {repo: "{repo.path}", ref: "{params.head}"}
          - key: vote
            use: majority_vote
            depends_on: [build]
            with: {head: "{params.head}", reviewers: 3}
          - key: window
            sync: {of: [build], timeout_seconds: 120, on_timeout: proceed}
        """,
    )
    plan = expand(library["checked"], {"head": "feature"}, VARIABLES, library=library)
    assert [t.key for t in plan.tasks] == ["build", "vote-review.1", "vote-review.2", "vote-review.3"]
    assert all(t.depends_on == ["build"] for t in plan.tasks[1:])
    keys = [(a.kind, a.key, a.after) for a in plan.actions]
    assert keys == [
        ("join", "vote-reviewed", ["build"]),
        ("merge", "vote-verdict", ["vote-reviewed", "build"]),
        ("merge", "vote-findings", ["vote-reviewed", "build"]),
        ("sync", "window", []),
    ]
    sync = plan.actions[-1]
    assert isinstance(sync, SyncAction) and sync.timeout_seconds == 120.0 and sync.on_timeout == "proceed"
    assert plan.result == "vote-verdict"
    validate_batch(plan.tasks)


def test_bindings_up_front_and_deferred_steps(tmp_path: Path) -> None:
    library = _library_with(
        tmp_path,
        "flow",
        """\
        name: flow
        result: vote
        steps:
          - key: change
            capability: code_review
            request_type: REVIEW_CODE
            payload: {repo: "{repo.path}", head: "{repo.head_branch}"}
          - key: tests
            capability: cicd
            request_type: RUN_PIPELINE
            payload: {repo: "{repo.path}", ref: "{steps.change.head_commit}"}
          - key: docs
            capability: documentation
            request_type: GENERATE_DOCS
            payload: {repo: "{repo.path}", doc_type: api, ref: "commit {steps.change.head_commit}"}
          - key: vote
            use: majority_vote
            with: {head: "{steps.change.head_commit}"}
        """,
    )
    plan = expand(library["flow"], {}, VARIABLES, library=library)
    assert [t.key for t in plan.tasks] == ["change", "tests"]
    assert plan.tasks[1].bindings == {"ref": "change.head_commit"} and plan.tasks[1].depends_on == ["change"]
    docs, vote = plan.actions
    assert isinstance(docs, DeferredAction) and docs.after == ["change"]  # inside text: no binding
    assert isinstance(vote, DeferredAction) and vote.after == ["change"]
    assert plan.result == "vote-verdict"
    results = {"change": {"head_commit": "f00d"}}
    assert render_deferred(docs, VARIABLES, results, library=library).tasks[0].payload["ref"] == "commit f00d"
    sub: PatternPlan = render_deferred(vote, VARIABLES, results, library=library)
    assert [t.key for t in sub.tasks] == ["vote-review.1", "vote-review.2", "vote-review.3"]
    assert sub.tasks[0].payload["head"] == "f00d" and sub.tasks[0].depends_on == []
    assert [a.key for a in sub.actions] == ["vote-reviewed", "vote-verdict", "vote-findings"]
    assert sub.result == "vote-verdict"


def test_events_of_every_kind_are_bounded(library: dict[str, Pattern]) -> None:
    plan = expand(library["majority_vote"], {"head": "feature"}, VARIABLES, library=library)
    split_event = coordination_event(plan.pattern, "review", plan.splits[0])
    assert split_event.run_event_kind == "coordination_split"
    assert split_event.data()["parts"] == ["review.1", "review.2", "review.3"]
    decision = join([task("a", "succeeded"), task("b", "failed")])
    assert coordination_event("p", "j", decision).data()["status"] == "failed"
    many = {
        f"r{i}": {"findings": [{"file": f"f{i}.py", "line": n, "rule": "X"} for n in range(40)]}
        for i in range(3)
    }
    union = merge(many, "union", field="findings", key=["file", "line", "rule"])
    data = coordination_event("p", "m", union).data()
    assert data["value"] is None and data["value_chars"] > 2000 and data["found_in"] is None


def test_a_plan_survives_the_checkpoint_as_json(library: dict[str, Pattern]) -> None:
    """The workflow keeps the plan in its checkpointed state: what comes back renders the same."""
    plan = expand(library["review_feedback_loop"], {"instruction": "x"}, VARIABLES, library=library)
    again = PatternPlan.model_validate_json(plan.model_dump_json())
    assert again == plan
    loop = again.actions[0]
    assert isinstance(loop, LoopAction)
    assert render_round(loop, 1, VARIABLES, {}, library=library) == render_round(
        plan.actions[0], 1, VARIABLES, {}, library=library
    )
    params = {"instruction": "x", "files": ["a.py", "b/c.py"]}
    parallel = expand(library["parallel_implementation"], params, VARIABLES, library=library)
    assert PatternPlan.model_validate(parallel.model_dump(mode="json")) == parallel


def test_a_pattern_using_others_needs_the_library(tmp_path: Path) -> None:
    others = _library_with(
        tmp_path, "u", "name: u\nsteps:\n  - {key: v, use: majority_vote, with: {head: x}}\n"
    )
    with pytest.raises(CoordinationArgumentError, match="uses pattern 'majority_vote', which the library"):
        expand(others["u"], {}, VARIABLES)
    assert expand(others["u"], {}, VARIABLES, library=others).tasks[0].key == "v-review.1"


def test_the_value_a_loop_waits_for_may_be_a_parameter(tmp_path: Path) -> None:
    library = _library_with(
        tmp_path,
        "retry",
        """\
        name: retry
        parameters: {want: {type: string, default: passed}}
        result: again
        steps:
          - key: again
            loop:
              max_rounds: 3
              until: {step: t, field: status, equals: "{params.want}"}
              result: t
              steps:
                - {key: t, capability: cicd, request_type: RUN_PIPELINE, payload: {repo: "{repo.path}"}}
        """,
    )
    loop = expand(library["retry"], {"want": "failed"}, VARIABLES, library=library).actions[0]
    assert isinstance(loop, LoopAction) and loop.until_equals == "failed"
    decision = loop_decision(loop, 1, {"again-r1-t": {"status": "failed"}})
    assert (decision.status, decision.result_key) == ("done", "again-r1-t")
