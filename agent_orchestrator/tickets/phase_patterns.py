"""A phase that applies a coordination pattern (`config/patterns/*.pattern.yaml`) by name:

    - name: REVIEW
      pattern: {name: majority_vote, with: {head: "{context.change.head_commit}", reviewers: 3}}

The ticket workflow expands the pattern for the ticket (`pattern_plan`) and carries the plan out as
the phase's tasks finish (`agent_orchestrator.coordination.driver`, in
`agent_orchestrator/workflows/ticket_coordination.py`): splits, joins, sync points with their
deadlines, merges, steps rendered from earlier results, used patterns and loops. The decisions of
the pattern's own steps go into the ticket's context under their keys (a vote's `verdict`, a
feedback loop's last implementation under `rounds`); docs/COORDINATION_PATTERNS.md has the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agent_orchestrator.coordination import PATTERNS_DIR, Pattern, PatternPlan, expand, load_patterns


class PhasePattern(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    with_: dict[str, Any] = Field(default_factory=dict, alias="with", max_length=50)


@lru_cache(maxsize=4)
def _library(directory: Path) -> dict[str, Pattern]:
    return load_patterns(directory)


def library(directory: Path = PATTERNS_DIR) -> dict[str, Pattern]:
    """The pattern files, loaded (and checked) once per process."""
    return _library(directory)


def pattern_problem(ref: PhasePattern, directory: Path = PATTERNS_DIR) -> tuple[str, str] | None:
    """(key, reason) when a phase cannot apply this pattern, None when it can."""
    known = library(directory)
    pattern = known.get(ref.name)
    if pattern is None:
        return "pattern.name", f"no pattern {ref.name!r} (known: {', '.join(sorted(known)) or 'none'})"
    unknown = sorted(set(ref.with_) - set(pattern.spec.parameters))
    if unknown:
        return (
            "pattern.with",
            f"unknown parameters {unknown} of {ref.name!r} (known: {sorted(pattern.spec.parameters)})",
        )
    missing = sorted(k for k, p in pattern.spec.parameters.items() if p.required and k not in ref.with_)
    if missing:
        return "pattern.with", f"{ref.name!r} needs the parameters {missing}"
    return None


def pattern_plan(
    ref: PhasePattern, variables: Mapping[str, Any], directory: Path = PATTERNS_DIR
) -> PatternPlan:
    """The pattern's plan for a ticket (its variables): what the workflow starts the phase from."""
    known = library(directory)
    return expand(known[ref.name], ref.with_, variables, library=known)
