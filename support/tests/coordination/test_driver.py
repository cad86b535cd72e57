"""The driver carries a plan out as the tasks finish: the shipped patterns and crafted ones, with the
task rows the store would return simulated in memory (the workflow test drives it on the agents)."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from agent_orchestrator.coordination import (
    PATTERNS_DIR,
    Pattern,
    PatternRun,
    Step,
    advance,
    expand,
    load_patterns,
)
from agent_orchestrator.tasks import Task, TaskSpec, TaskStatus
from support.tests.coordination.helpers import T0, VARIABLES, review, task

pytestmark = pytest.mark.unit

Agent = Callable[[TaskSpec], tuple[str, Any]]


class World:
    """The phase's task rows: created as the driver asks, finished by `agent` (status, result) when
    `finish` is called, cancelled when the driver cancels them."""

    def __init__(self, library: dict[str, Pattern], agent: Agent) -> None:
        self.library, self.agent = library, agent
        self.rows: dict[str, Task] = {}
        self.specs: dict[str, TaskSpec] = {}
        self.events: list[tuple[str, str, str]] = []
        self.now = T0

    def apply(self, step: Step) -> PatternRun:
        for spec in step.create:
            if spec.key not in self.rows:
                self.specs[spec.key] = spec
                self.rows[spec.key] = task(spec.key, "ready", payload=spec.payload)
        by_id = {t.id: k for k, t in self.rows.items()}
        for task_id in step.cancel:
            key = by_id[task_id]
            self.rows[key] = self.rows[key].model_copy(update={"status": TaskStatus.CANCELLED})
        self.events += [(e.kind, e.key, e.status) for e in step.events]
        return step.run

    def finish(self, *, only: Callable[[str], bool] = lambda key: True) -> None:
        for key, row in list(self.rows.items()):
            if row.status.final or not only(key):
                continue
            spec = self.specs[key]
            payload = {**spec.payload, **{f: self._bound(b) for f, b in spec.bindings.items()}}
            status, result = self.agent(spec.model_copy(update={"payload": payload}))
            self.rows[key] = row.model_copy(
                update={"status": TaskStatus(status), "result": result, "payload": payload}
            )

    def _bound(self, binding: str) -> Any:
        source, _, path = binding.partition(".")
        return self.rows[source].result[path]

    def step(self, run: PatternRun) -> Step:
        return advance(run, list(self.rows.values()), self.now, VARIABLES, library=self.library)

    def drive(self, run: PatternRun, rounds: int = 20) -> PatternRun:
        for _ in range(rounds):
            run = self.apply(self.step(run))
            if run.finished:
                return run
            self.finish()
        raise AssertionError(f"not finished after {rounds} rounds: {run}")


def start(world: World, name: str, params: dict[str, Any]) -> PatternRun:
    plan = expand(world.library[name], params, VARIABLES, library=world.library)
    return world.apply(PatternRun.start(plan)[1])


@pytest.fixture(scope="module")
def library() -> dict[str, Pattern]:
    return load_patterns()


def test_a_majority_vote_with_one_dissent_decides_and_records_its_steps(library: dict[str, Pattern]) -> None:
    verdicts = iter(["approve", "request_changes", "approve"])
    world = World(library, lambda spec: ("succeeded", review(next(verdicts), ("a.py", 1, "E1"))))
    run = world.drive(start(world, "majority_vote", {"head": "feature"}))
    assert run.failures(list(world.rows.values())) == []
    assert run.outcome()["verdict"]["value"] == "approve"
    assert run.outcome()["findings"]["value"] == [review("approve", ("a.py", 1, "E1"))["findings"][0]]
    assert [e for e in world.events if e[0] != "split"] == [
        ("join", "reviewed", "ready"), ("merge", "verdict", "decided"), ("merge", "findings", "decided"),
    ]  # fmt: skip


def test_a_failed_reviewer_fails_the_join_and_nothing_is_merged(library: dict[str, Pattern]) -> None:
    outcomes = iter([("succeeded", review("approve")), ("failed", None), ("succeeded", review("approve"))])
    world = World(library, lambda spec: next(outcomes))
    run = world.drive(start(world, "majority_vote", {"head": "feature"}))
    failures = run.failures(list(world.rows.values()))
    assert failures[0].startswith("reviewed: all of 3 can no longer be reached")
    assert "verdict: not run: reviewed did not succeed" in failures
    assert "review.2 failed" in failures
    assert "verdict" not in run.outcome()


def _loop_agent(verdicts: list[str]) -> Agent:
    rounds = iter(verdicts)

    def agent(spec: TaskSpec) -> tuple[str, Any]:
        if spec.request_type == "GENERATE_CODE":
            return "succeeded", {"branch": spec.payload["branch"], "commit": "c" * 40}
        verdict = next(rounds)
        findings = [("calc.py", 3, "C901")] if verdict != "approve" else []
        return "succeeded", review(verdict, *findings)

    return agent


def test_the_review_loop_feeds_findings_back_and_stops_at_approve(library: dict[str, Pattern]) -> None:
    world = World(library, _loop_agent(["request_changes", "approve"]))
    run = world.drive(start(world, "review_feedback_loop", {"instruction": "Add mul", "max_rounds": 3}))
    assert run.failures(list(world.rows.values())) == []
    assert list(world.rows) == [
        "rounds-r1-implement",
        "rounds-r1-review",
        "rounds-r2-implement",
        "rounds-r2-review",
    ]
    second = world.rows["rounds-r2-implement"].payload
    assert second["base_ref"] == "devtools/ticket-t-1-r1"  # cut from round 1's branch
    assert "C901" in second["instruction"]  # with round 1's findings to address
    assert world.rows["rounds-r2-review"].payload["head"] == "devtools/ticket-t-1-r2"
    assert run.outcome()["rounds"] == {"branch": "devtools/ticket-t-1-r2", "commit": "c" * 40}
    assert [e for e in world.events if e[0] == "loop"] == [
        ("loop", "rounds", "continue"),
        ("loop", "rounds", "done"),
    ]


def test_the_review_loop_stops_at_its_round_limit(library: dict[str, Pattern]) -> None:
    world = World(library, _loop_agent(["request_changes", "comment"]))
    run = world.drive(start(world, "review_feedback_loop", {"instruction": "Add mul", "max_rounds": 2}))
    assert len(world.rows) == 4  # two rounds, no third
    assert run.failures(list(world.rows.values())) == [
        'rounds: 2 rounds and review.verdict is "comment", not "approve"'
    ]


def _library_with(tmp_path: Path, name: str, body: str) -> dict[str, Pattern]:
    shutil.copy(PATTERNS_DIR / "majority_vote.pattern.yaml", tmp_path)
    (tmp_path / f"{name}.pattern.yaml").write_text(textwrap.dedent(body), encoding="utf-8")
    return load_patterns(tmp_path)


TIMEBOX = """\
name: timebox
result: report
steps:
  - key: check
    capability: cicd
    request_type: VALIDATE_BUILD
    split: {count: 3}
    payload: {repo: "{repo.path}", ref: "{repo.head_branch}"}
  - key: window
    sync: {of: [check], timeout_seconds: 30, on_timeout: ON_TIMEOUT}
  - key: report
    depends_on: [window]
    merge: {of: [check], strategy: combine, field: artifact}
"""


@pytest.mark.parametrize("on_timeout", ["fail", "proceed"])
def test_a_sync_point_past_its_timeout_cancels_the_late_tasks(tmp_path: Path, on_timeout: str) -> None:
    library = _library_with(tmp_path, "timebox", TIMEBOX.replace("ON_TIMEOUT", on_timeout))
    world = World(library, lambda spec: ("succeeded", {"artifact": spec.key}))
    run = start(world, "timebox", {})
    world.finish(only=lambda key: key != "check.2")  # check.2 is late
    step = world.step(run)
    assert step.wake_at == T0 + timedelta(seconds=30) and not step.cancel
    run = world.apply(step)
    # Woken again before the deadline (another task changed): the deadline does not move.
    world.now = T0 + timedelta(seconds=10)
    assert world.step(run).wake_at == T0 + timedelta(seconds=30)
    world.now = T0 + timedelta(seconds=30)
    step = world.step(run)
    assert step.cancel == [world.rows["check.2"].id]
    run = world.apply(step)
    assert world.rows["check.2"].status is TaskStatus.CANCELLED
    run = world.apply(world.step(run))
    assert run.finished
    failures = run.failures(list(world.rows.values()))
    if on_timeout == "fail":
        assert failures[0].startswith("window: deadline") and "check.2 unfinished" in failures[0]
        assert "report: not run: window did not succeed" in failures
    else:
        assert failures == []  # the late task was given up on, not failed
        assert run.outcome()["report"]["value"] == {"check.1": "check.1", "check.3": "check.3"}
    assert ("sync", "window", "timed_out") in world.events


def test_a_step_rendered_from_an_earlier_result_and_a_used_pattern(tmp_path: Path) -> None:
    library = _library_with(
        tmp_path,
        "flow",
        """\
        name: flow
        result: vote
        steps:
          - key: build
            capability: cicd
            request_type: VALIDATE_BUILD
            payload: {repo: "{repo.path}", ref: "{repo.head_branch}"}
          - key: built
            depends_on: [build]
            merge: {of: [build], strategy: combine, field: artifact}
          - key: vote
            use: majority_vote
            depends_on: [built]
            with: {head: "{steps.built.value.build}", reviewers: 3}
        """,
    )

    def agent(spec: TaskSpec) -> tuple[str, Any]:
        if spec.request_type == "VALIDATE_BUILD":
            return "succeeded", {"artifact": "release-7"}
        assert spec.payload["head"] == "release-7"  # rendered from the merge's result
        return "succeeded", review("approve")

    world = World(library, agent)
    run = world.drive(start(world, "flow", {}))
    assert run.failures(list(world.rows.values())) == []
    assert sorted(world.rows) == ["build", "vote-review.1", "vote-review.2", "vote-review.3"]
    assert run.decisions["vote-verdict"]["value"] == "approve"


def test_an_advance_is_deterministic_for_a_re_executed_node(library: dict[str, Pattern]) -> None:
    world = World(library, _loop_agent(["request_changes", "approve"]))
    run = world.apply(world.step(start(world, "review_feedback_loop", {"instruction": "Add mul"})))
    world.finish()  # round 1 asked for changes
    first, again = world.step(run), world.step(run)
    assert [s.key for s in first.create] == [s.key for s in again.create] == [
        "rounds-r2-implement", "rounds-r2-review",
    ]  # fmt: skip
    assert first.run == again.run and run.rounds == {"rounds": 1}  # the input is not modified
    assert PatternRun.model_validate_json(first.run.model_dump_json()) == first.run
