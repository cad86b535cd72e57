"""Merges on crafted results: combine, union and intersection (deduplicated by an identity key),
majority with its ties reported and resolved only by the declared tie-breaker."""

from __future__ import annotations

import re

import pytest

from agent_orchestrator.coordination import MergeError, MergeStrategy, TieBreaker, TieError, merge
from support.tests.coordination.helpers import review

pytestmark = pytest.mark.unit

SEVERITY = ["request_changes", "comment", "approve"]


def test_combine_keys_each_value_by_its_source_and_lists_the_missing() -> None:
    results = {
        "implement.1": {"branch": "p1"},
        "implement.2": {"branch": None},
        "implement.3": {"branch": "p3"},
    }
    merged = merge(results, "combine", field="branch")
    assert merged.value == {"implement.1": "p1", "implement.3": "p3"}
    assert merged.sources == ["implement.1", "implement.3"]
    assert merged.missing == ["implement.2"]
    assert merged.decided


def test_combine_of_whole_results() -> None:
    merged = merge({"a": {"x": 1}, "b": [2]}, MergeStrategy.COMBINE)
    assert merged.value == {"a": {"x": 1}, "b": [2]}


def test_union_of_findings_keeps_each_file_line_rule_once_in_a_stable_order() -> None:
    results = {
        "review.1": review("comment", ("a.py", 3, "F401"), ("b.py", 7, "E501")),
        "review.2": review("comment", ("b.py", 7, "E501"), ("a.py", None, "missing-tests")),
        "review.3": review("approve"),
    }
    merged = merge(results, "union", field="findings", key=["file", "line", "rule"])
    assert [(f["file"], f["line"], f["rule"]) for f in merged.value] == [
        ("a.py", 3, "F401"),
        ("b.py", 7, "E501"),
        ("a.py", None, "missing-tests"),
    ]
    assert merged.found_in == [["review.1"], ["review.1", "review.2"], ["review.2"]]
    assert merged.duplicates == 1
    assert merged.sources == ["review.1", "review.2", "review.3"]


def test_union_identity_ignores_fields_outside_the_key() -> None:
    one = {"findings": [{"file": "a.py", "line": 1, "rule": "X", "message": "first wording"}]}
    two = {"findings": [{"file": "a.py", "line": 1, "rule": "X", "message": "other wording"}]}
    merged = merge({"r1": one, "r2": two}, "union", field="findings", key=["file", "line", "rule"])
    assert merged.value == one["findings"]  # the first occurrence is the one kept
    without_key = merge({"r1": one, "r2": two}, "union", field="findings")
    assert len(without_key.value) == 2  # without a key an item is its own identity


def test_union_of_whole_results_and_of_scalars() -> None:
    assert merge({"a": ["x", "y"], "b": ["y", "z"], "c": "w"}, "union").value == ["x", "y", "z", "w"]
    same = merge({"a": {"k": 1, "v": 2}, "b": {"v": 2, "k": 1}}, "union")
    assert same.value == [{"k": 1, "v": 2}]  # compared as JSON, whatever the order of the keys


def test_intersection_keeps_what_every_source_has_in_the_first_sources_order() -> None:
    results = {
        "r1": {"files": ["c.py", "a.py", "b.py"]},
        "r2": {"files": ["a.py", "b.py", "c.py", "d.py"]},
        "r3": {"files": ["b.py", "c.py"]},
        "r4": {"files": None},
    }
    merged = merge(results, "intersection", field="files")
    assert merged.value == ["c.py", "b.py"]
    assert merged.missing == ["r4"]
    assert merged.found_in == [["r1", "r2", "r3"], ["r1", "r2", "r3"]]


def test_intersection_of_findings_by_identity() -> None:
    results = {
        "review.1": review("comment", ("a.py", 3, "F401"), ("b.py", 7, "E501")),
        "review.2": review("comment", ("b.py", 7, "E501")),
    }
    merged = merge(results, "intersection", field="findings", key=["file", "line", "rule"])
    assert [(f["file"], f["line"]) for f in merged.value] == [("b.py", 7)]


def test_a_majority_of_three_with_one_dissent_gives_the_majority_verdict() -> None:
    results = {
        "review.1": review("approve"),
        "review.2": review("request_changes"),
        "review.3": review("approve"),
    }
    merged = merge(results, "majority", field="verdict", tie_breaker="fail")
    assert merged.value == "approve"
    assert merged.decided and merged.tie is None and merged.resolution is None
    assert [(v.value, v.votes, v.sources) for v in merged.counts] == [
        ("approve", 2, ["review.1", "review.3"]),
        ("request_changes", 1, ["review.2"]),
    ]


def test_a_tie_without_a_tie_breaker_is_reported_not_decided() -> None:
    merged = merge({"r1": review("approve"), "r2": review("request_changes")}, "majority", field="verdict")
    assert not merged.decided
    assert merged.value is None
    assert merged.tie is not None
    assert merged.tie.leaders == ["approve", "request_changes"]
    assert merged.tie.votes_cast == 2
    assert merged.tie_breaker is None


def test_a_tie_is_resolved_only_by_the_declared_tie_breaker_and_says_so() -> None:
    results = {"r1": review("approve"), "r2": review("request_changes")}
    first = merge(results, "majority", field="verdict", tie_breaker="first")
    assert first.value == "approve"
    assert first.tie is not None and first.tie_breaker is TieBreaker.FIRST
    assert "tie resolved by first" in (first.resolution or "")
    severe = merge(results, "majority", field="verdict", tie_breaker="most_severe", severity_order=SEVERITY)
    assert severe.value == "request_changes"
    assert severe.tie is not None and severe.tie_breaker is TieBreaker.MOST_SEVERE
    assert severe.resolution == (
        'tie resolved by most_severe ("request_changes" > "comment" > "approve"): "request_changes"'
    )


def test_the_fail_tie_breaker_raises_naming_the_tie() -> None:
    results = {"r1": review("approve"), "r2": review("comment"), "r3": review("request_changes")}
    with pytest.raises(TieError) as caught:
        merge(results, "majority", field="verdict", tie_breaker="fail")
    message = str(caught.value)
    assert "no strict majority for verdict among 3 votes" in message
    assert '"approve" 1 (r1)' in message and '"request_changes" 1 (r3)' in message
    assert "tie_breaker is fail" in message
    assert caught.value.tie.leaders == ["approve", "comment", "request_changes"]


def test_a_plurality_is_not_a_strict_majority() -> None:
    results = {"a": {"v": "x"}, "b": {"v": "x"}, "c": {"v": "y"}, "d": {"v": "z"}}
    merged = merge(results, "majority", field="v")
    assert not merged.decided and merged.tie is not None
    assert merged.tie.leaders == ["x"]  # 2 of 4 is not more than half
    assert merge(results, "majority", field="v", tie_breaker="first").value == "x"


def test_majority_counts_votes_cast_and_lists_abstentions() -> None:
    results = {"r1": review("approve"), "r2": None, "r3": {"verdict": None}, "r4": review("request_changes")}
    merged = merge(
        results, "majority", field="decided_by.verdict", tie_breaker="most_severe", severity_order=SEVERITY
    )
    assert merged.missing == ["r2", "r3"]
    assert merged.value == "request_changes" and merged.tie is not None


def test_majority_refusals() -> None:
    with pytest.raises(MergeError, match="no votes"):
        merge({"r1": {}, "r2": {}}, "majority", field="verdict", tie_breaker="first")
    with pytest.raises(MergeError, match="needs a severity_order"):
        merge({"r1": {"v": 1}, "r2": {"v": 2}}, "majority", field="v", tie_breaker="most_severe")
    with pytest.raises(MergeError, match=re.escape('"maybe" is not in the severity_order')):
        merge(
            {"r1": {"v": "maybe"}, "r2": {"v": "approve"}},
            "majority",
            field="v",
            tie_breaker="most_severe",
            severity_order=SEVERITY,
        )


def test_options_that_do_not_fit_the_strategy_are_refused() -> None:
    with pytest.raises(MergeError, match="identity key is for union and intersection"):
        merge({"a": 1}, "combine", key=["file"])
    with pytest.raises(MergeError, match="tie-breaker is for majority"):
        merge({"a": [1]}, "union", tie_breaker="first")
    with pytest.raises(MergeError, match="an object, not a list"):
        merge({"a": {"f": {"x": 1}}}, "union", field="f")
    with pytest.raises(MergeError, match="item 0 is 3, which has no fields"):
        merge({"a": [3]}, "union", key=["file"])
    with pytest.raises(ValueError):
        merge({"a": 1}, "average")
