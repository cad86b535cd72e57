"""split, partition, join (all and quorum) and sync_point as decisions over task rows."""

from __future__ import annotations

from datetime import timedelta

import pytest

from agent_orchestrator.coordination import (
    CoordinationArgumentError,
    join,
    merge,
    partition,
    quorum,
    results_of,
    split,
    sync_point,
)
from agent_orchestrator.tasks import TaskSpec, validate_batch
from support.tests.coordination.helpers import T0, review, task

pytestmark = pytest.mark.unit


def _spec(**fields: object) -> TaskSpec:
    base = {
        "key": "implement",
        "title": "Implement",
        "capability": "feature_dev",
        "request_type": "GENERATE_CODE",
        "payload": {"repo": "/srv/repo", "instruction": "do it"},
        "depends_on": ["outline"],
        "priority": 5,
        "locks": ["repo:repo"],
    }
    return TaskSpec.model_validate(base | fields)


def test_split_makes_n_specs_keyed_by_part_with_their_payload() -> None:
    parts = split(_spec(), [{"files": ["a.py"]}, {"files": ["b.py"], "instruction": "part two"}])
    assert [p.key for p in parts] == ["implement.1", "implement.2"]
    assert [p.title for p in parts] == ["Implement (part 1/2)", "Implement (part 2/2)"]
    assert parts[0].payload == {"repo": "/srv/repo", "instruction": "do it", "files": ["a.py"]}
    assert parts[1].payload["instruction"] == "part two"
    for part in parts:
        assert (part.capability, part.request_type, part.priority) == ("feature_dev", "GENERATE_CODE", 5)
        assert part.depends_on == ["outline"] and part.locks == ["repo:repo"]
    validate_batch([_spec(key="outline", depends_on=[]), *parts])


def test_split_refuses_no_parts_too_many_and_a_key_past_its_bound() -> None:
    with pytest.raises(CoordinationArgumentError, match="1 to 50 parts, got 0"):
        split(_spec(), [])
    with pytest.raises(CoordinationArgumentError, match="got 51"):
        split(_spec(), [{}] * 51)
    with pytest.raises(CoordinationArgumentError) as caught:
        split(_spec(key="k" * 63), [{}])
    assert caught.value.field == "parts[0].key"


def test_partition_by_file_balances_and_keeps_the_order() -> None:
    files = ["a.py", "b.py", "c.py", "d.py", "e.py", "a.py"]
    assert partition(files, 2, "file") == [["a.py", "c.py", "e.py"], ["b.py", "d.py"]]
    assert partition(files, 10, "file") == [["a.py"], ["b.py"], ["c.py"], ["d.py"], ["e.py"]]
    assert partition(files, 1) == [["a.py", "b.py", "c.py", "d.py", "e.py"]]


def test_partition_by_module_keeps_a_folders_files_together() -> None:
    files = ["pkg/a.py", "docs/x.md", "pkg/b.py", "README.md", "pkg/sub/c.py", "pkg/d.py"]
    parts = partition(files, 2, "module")
    assert parts == [["pkg/a.py", "pkg/b.py", "pkg/d.py"], ["docs/x.md", "README.md", "pkg/sub/c.py"]]
    assert partition(files, 9, "module") == [
        ["pkg/a.py", "pkg/b.py", "pkg/d.py"],
        ["docs/x.md"],
        ["README.md"],
        ["pkg/sub/c.py"],
    ]


def test_partition_refusals() -> None:
    with pytest.raises(CoordinationArgumentError, match="no files"):
        partition([], 2)
    with pytest.raises(CoordinationArgumentError, match="at least one part"):
        partition(["a.py"], 0)
    with pytest.raises(CoordinationArgumentError, match="file or module"):
        partition(["a.py"], 1, "folder")  # type: ignore[arg-type]


def test_join_all_waits_then_is_ready_when_every_task_succeeded() -> None:
    waiting = join([task("a", "succeeded"), task("b", "running"), task("c", "ready")])
    assert waiting.status == "waiting"
    assert waiting.unfinished == ["b", "c"] and waiting.succeeded == ["a"]
    assert "waiting for b, c" in waiting.reason
    ready = join([task("a", "succeeded"), task("b", "succeeded")])
    assert ready.status == "ready" and ready.needed == 2 and ready.mode == "all"


def test_join_all_fails_as_soon_as_one_task_ended_otherwise() -> None:
    decision = join([task("a", "succeeded"), task("b", "failed", error="boom"), task("c", "running")])
    assert decision.status == "failed"
    assert decision.unsuccessful == ["b"]
    assert "b failed (boom)" in decision.reason


def test_join_quorum_is_ready_at_n_and_fails_when_n_is_out_of_reach() -> None:
    tasks = [task("r.1", "succeeded"), task("r.2", "running"), task("r.3", "succeeded")]
    ready = join(tasks, quorum(2))
    assert ready.status == "ready" and ready.mode == "quorum(2)"
    assert ready.cancel == []  # nothing is cancelled unless the join declares cancel_rest
    assert join(tasks, quorum(2), cancel_rest=True).cancel == [tasks[1].id]
    assert join(tasks, quorum(3)).status == "waiting"
    lost = join([task("r.1", "failed"), task("r.2", "timed_out"), task("r.3", "running")], quorum(2))
    assert lost.status == "failed"
    assert "quorum(2) of 3 can no longer be reached" in lost.reason
    assert "r.1 failed" in lost.reason and "r.2 timed_out" in lost.reason


def test_join_refusals() -> None:
    with pytest.raises(CoordinationArgumentError, match="nothing to wait for"):
        join([])
    with pytest.raises(CoordinationArgumentError, match="quorum\\(3\\) of 2 tasks can never be reached"):
        join([task("a"), task("b")], quorum(3))
    with pytest.raises(CoordinationArgumentError, match="join all or quorum"):
        join([task("a")], "most")  # type: ignore[arg-type]


def test_sync_point_waits_until_the_deadline() -> None:
    tasks = [task("a", "succeeded"), task("b", "running")]
    decision = sync_point(tasks, T0 + timedelta(minutes=5), T0)
    assert decision.status == "waiting" and not decision.proceed
    assert decision.cancel == [] and "for b" in decision.reason


def test_sync_point_is_ready_when_every_task_is_final_whatever_its_outcome() -> None:
    tasks = [task("a", "succeeded"), task("b", "failed")]
    decision = sync_point(tasks, T0, T0)  # finished exactly at the deadline: in time
    assert decision.status == "ready" and decision.proceed
    assert decision.succeeded == ["a"] and decision.unsuccessful == ["b"]


def test_a_timed_out_sync_point_names_the_late_tasks_and_fails_or_proceeds_as_declared() -> None:
    tasks = [task("a", "succeeded"), task("b", "running"), task("c", "assigned"), task("d", "cancelled")]
    late = T0 + timedelta(seconds=61)
    failed = sync_point(tasks, T0 + timedelta(minutes=1), late, on_timeout="fail")
    assert failed.status == "timed_out" and not failed.proceed
    assert failed.late == ["b", "c"]
    assert failed.cancel == [tasks[1].id, tasks[2].id]
    assert "they are cancelled and the sync point fails" in failed.reason
    proceeding = sync_point(tasks, T0 + timedelta(minutes=1), late, on_timeout="proceed")
    assert proceeding.status == "timed_out" and proceeding.proceed
    assert proceeding.cancel == failed.cancel and proceeding.succeeded == ["a"]
    assert "proceeds with the tasks that succeeded" in proceeding.reason


def test_sync_point_refusals() -> None:
    with pytest.raises(CoordinationArgumentError, match="timezone-aware"):
        sync_point([task("a")], T0.replace(tzinfo=None), T0)
    with pytest.raises(CoordinationArgumentError, match="fail or proceed"):
        sync_point([task("a")], T0, T0, on_timeout="ignore")  # type: ignore[arg-type]


def test_results_of_feeds_a_merge_with_the_unsucceeded_as_missing() -> None:
    tasks = [
        task("review.2", "succeeded", review("request_changes")),
        task("review.1", "succeeded", review("approve")),
        task("review.3", "failed"),
    ]
    results = results_of(tasks, ["review.1", "review.2", "review.3"])
    assert list(results) == ["review.1", "review.2", "review.3"] and results["review.3"] is None
    merged = merge(results, "majority", field="verdict", tie_breaker="first")
    assert merged.missing == ["review.3"]
    assert merged.value == "approve" and merged.tie is not None
