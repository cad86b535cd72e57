"""Merging the results of several tasks into one: `merge(results, strategy, ...)`.

`results` maps a source (a task key) to its result, in the order that counts (the first source is
the one `first` prefers and whose order a union keeps). `field` is a dotted path into each result
(`verdict`, `decided_by.verdict`, `findings`); without it the whole result is used. A source whose
result lacks the field (or holds null there) is left out and listed in `missing`.

* combine: `{source: value}` for every source that has the value.
* union: the items of every source's list, in source order then item order, each identity once
  (the first occurrence is kept). `key` declares the identity: fields of an item
  (`["file", "line", "rule"]` for review findings; an absent field counts as null); without it an
  item is its own identity. A source whose value is not a list contributes it as one item.
  `found_in` says, per kept item, which sources had it.
* intersection: the items every contributing source has (by identity), in the first source's order.
* majority: the value (compared as JSON) that has more than half of the votes cast wins. Anything
  else is a `Tie` (the counts, the leaders: the values with the most votes), never decided silently:
  with no `tie_breaker` the result is undecided (`decided` false, `value` None); `first` takes the
  leader the earliest source voted for, `most_severe` the leader earliest in the declared
  `severity_order` (most severe first), `fail` raises TieError naming the tie. The result says it
  was a tie and how it was resolved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from agent_orchestrator.coordination.errors import MergeError, TieError
from agent_orchestrator.coordination.templating import MISSING, canonical, get_path


class MergeStrategy(StrEnum):
    COMBINE = "combine"
    UNION = "union"
    INTERSECTION = "intersection"
    MAJORITY = "majority"


class TieBreaker(StrEnum):
    FIRST = "first"
    MOST_SEVERE = "most_severe"
    FAIL = "fail"


class Vote(BaseModel):
    """One value of a majority merge: how many sources voted for it, and which."""

    value: Any
    votes: int
    sources: list[str]


class Tie(BaseModel):
    """No value has a strict majority of the votes cast."""

    field: str | None
    votes_cast: int
    leaders: list[Any] = Field(description="the values with the most votes, in the order first voted for")
    counts: list[Vote] = Field(description="every value, most votes first, then in the order first voted for")

    def describe(self) -> str:
        what = self.field or "the results"
        counts = ", ".join(f"{canonical(v.value)} {v.votes} ({', '.join(v.sources)})" for v in self.counts)
        return f"no strict majority for {what} among {self.votes_cast} votes: tie between {counts}"


class MergeResult(BaseModel):
    """What a merge decided, and from what."""

    strategy: MergeStrategy
    field: str | None = None
    value: Any = Field(description="the merged value; None for an unresolved tie")
    decided: bool = Field(True, description="False only for a tie no tie-breaker was declared for")
    sources: list[str] = Field(description="the sources whose values were merged, in order")
    missing: list[str] = Field(default_factory=list, description="sources without the field: left out")
    found_in: list[list[str]] | None = Field(
        None, description="union / intersection: per item of `value`, the sources that had it"
    )
    duplicates: int = Field(0, description="union: items left out because an equal identity came first")
    counts: list[Vote] | None = Field(None, description="majority: the votes per value")
    tie: Tie | None = Field(None, description="majority: set when no value had a strict majority")
    tie_breaker: TieBreaker | None = Field(
        None, description="majority: the tie-breaker that resolved the tie"
    )
    resolution: str | None = Field(None, description="majority: how a tie was resolved, in words")


def merge(
    results: Mapping[str, Any],
    strategy: MergeStrategy | str,
    *,
    field: str | None = None,
    key: Sequence[str] | None = None,
    tie_breaker: TieBreaker | str | None = None,
    severity_order: Sequence[Any] | None = None,
) -> MergeResult:
    """Merge `results` (source -> result) with `strategy`; MergeError when they cannot be merged as
    declared, TieError for a majority tie whose tie_breaker is `fail`."""
    strategy = MergeStrategy(strategy)
    if key is not None and strategy not in (MergeStrategy.UNION, MergeStrategy.INTERSECTION):
        raise MergeError(f"an identity key is for union and intersection, not {strategy}")
    if (tie_breaker is not None or severity_order is not None) and strategy is not MergeStrategy.MAJORITY:
        raise MergeError(f"a tie-breaker is for majority merges, not {strategy}")
    values: dict[str, Any] = {}
    missing: list[str] = []
    for source, result in results.items():
        value = result if field is None else get_path(result, field)
        if value is MISSING or value is None:
            missing.append(source)
        else:
            values[source] = value
    if strategy is MergeStrategy.COMBINE:
        return MergeResult(
            strategy=strategy, field=field, value=values, sources=list(values), missing=missing
        )
    if strategy is MergeStrategy.MAJORITY:
        breaker = TieBreaker(tie_breaker) if tie_breaker is not None else None
        return _majority(values, field, missing, breaker, severity_order)
    return _set_merge(strategy, values, field, missing, key)


def _items(source: str, value: Any, field: str | None) -> list[Any]:
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=canonical)  # a set has no order of its own: make it reproducible
    if field is not None and isinstance(value, Mapping):
        raise MergeError(f"{source}: {field} is an object, not a list: union and intersection merge lists")
    return [value]


def _identity(source: str, index: int, item: Any, key: Sequence[str] | None) -> str:
    if key is None:
        return canonical(item)
    if not isinstance(item, Mapping):
        raise MergeError(
            f"{source}: item {index} is {canonical(item)[:80]}, which has no fields for the identity "
            f"key ({', '.join(key)})"
        )
    return canonical([None if (v := get_path(item, name)) is MISSING else v for name in key])


def _set_merge(
    strategy: MergeStrategy,
    values: Mapping[str, Any],
    field: str | None,
    missing: list[str],
    key: Sequence[str] | None,
) -> MergeResult:
    kept: dict[str, Any] = {}  # identity -> the first item with it
    found_in: dict[str, list[str]] = {}
    duplicates = 0
    for source, value in values.items():
        seen_here: set[str] = set()
        for index, item in enumerate(_items(source, value, field)):
            identity = _identity(source, index, item, key)
            if identity in seen_here or identity in kept:
                duplicates += 1
            else:
                kept[identity] = item
            if identity not in seen_here:
                found_in.setdefault(identity, []).append(source)
                seen_here.add(identity)
    sources = list(values)
    if strategy is MergeStrategy.INTERSECTION:
        # The first source's order: an identity every source had was first seen there.
        chosen = [i for i in kept if len(found_in[i]) == len(sources)]
        return MergeResult(
            strategy=strategy,
            field=field,
            value=[kept[i] for i in chosen],
            sources=sources,
            missing=missing,
            found_in=[found_in[i] for i in chosen],
        )
    return MergeResult(
        strategy=strategy,
        field=field,
        value=list(kept.values()),
        sources=sources,
        missing=missing,
        found_in=[found_in[i] for i in kept],
        duplicates=duplicates,
    )


def _majority(
    values: Mapping[str, Any],
    field: str | None,
    missing: list[str],
    tie_breaker: TieBreaker | None,
    severity_order: Sequence[Any] | None,
) -> MergeResult:
    if not values:
        raise MergeError(f"no votes: no source has {field or 'a result'} (missing: {', '.join(missing)})")
    tally: dict[str, Vote] = {}
    for source, value in values.items():
        vote = tally.setdefault(canonical(value), Vote(value=value, votes=0, sources=[]))
        vote.votes += 1
        vote.sources.append(source)
    # Most votes first; equal counts keep the order first voted for (dicts keep insertion order).
    counts = sorted(tally.values(), key=lambda v: -v.votes)
    cast = len(values)
    common = {"strategy": MergeStrategy.MAJORITY, "field": field, "sources": list(values), "missing": missing}
    if 2 * counts[0].votes > cast:
        return MergeResult(value=counts[0].value, counts=counts, **common)
    top = counts[0].votes
    tie = Tie(
        field=field, votes_cast=cast, leaders=[v.value for v in counts if v.votes == top], counts=counts
    )
    if tie_breaker is None:
        return MergeResult(value=None, decided=False, counts=counts, tie=tie, **common)
    if tie_breaker is TieBreaker.FAIL:
        raise TieError(tie)
    if tie_breaker is TieBreaker.FIRST:
        winner = tie.leaders[0]
        how = f"tie resolved by first: {canonical(winner)}, the earliest source's vote among the leaders"
    else:
        winner = _most_severe(tie, severity_order)
        order = " > ".join(canonical(v) for v in severity_order or ())
        how = f"tie resolved by most_severe ({order}): {canonical(winner)}"
    return MergeResult(
        value=winner, counts=counts, tie=tie, tie_breaker=tie_breaker, resolution=how, **common
    )


def _most_severe(tie: Tie, severity_order: Sequence[Any] | None) -> Any:
    if not severity_order:
        raise MergeError(f"{tie.describe()}; the tie_breaker most_severe needs a severity_order")
    rank = {canonical(v): i for i, v in enumerate(severity_order)}
    unranked = [v for v in tie.leaders if canonical(v) not in rank]
    if unranked:
        raise MergeError(
            f"{tie.describe()}; {canonical(unranked[0])} is not in the severity_order "
            f"({', '.join(canonical(v) for v in severity_order)})"
        )
    return min(tie.leaders, key=lambda v: rank[canonical(v)])
