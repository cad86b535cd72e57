"""Errors of the coordination layer. Every one is a `CoordinationError` (a ValueError: each says
what was asked that cannot be decided or rendered), so a caller catches the family."""

from __future__ import annotations

from typing import Protocol


class _Described(Protocol):
    # merge.Tie; a protocol, because merge.py imports this module and siblings import no cycles
    def describe(self) -> str: ...


class CoordinationError(ValueError):
    """A primitive, a merge or a pattern was given something it cannot decide on."""


class CoordinationArgumentError(CoordinationError):
    """A bad argument of a call (a pattern's parameter, a split's parts, a join's quorum); `field`
    names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


class MergeError(CoordinationError):
    """Results cannot be merged as declared (a field that is not a list, an identity key on a value
    that has no fields, no votes at all, a tie-breaker without its severity order)."""


class TieError(MergeError):
    """A majority merge found no strict majority and its declared tie-breaker is `fail`."""

    def __init__(self, tie: _Described) -> None:
        super().__init__(f"{tie.describe()}; the declared tie_breaker is fail")
        self.tie = tie


class PatternError(CoordinationError):
    """A pattern file is unusable: `file`, the `key` path in it (`steps[2].join.of[0]`), and why."""

    def __init__(self, file: str, key: str, reason: str) -> None:
        super().__init__(f"{file}: {key}: {reason}")
        self.file = file
        self.key = key
        self.reason = reason


class TemplateError(CoordinationError):
    """A `{...}` placeholder cannot be parsed or resolved; `placeholder` is its text, `where` the
    template and key that held it (`review_feedback_loop steps[0]: payload.instruction`)."""

    def __init__(self, placeholder: str, reason: str, *, where: str = "") -> None:
        super().__init__(f"{where}: {placeholder}: {reason}" if where else f"{placeholder}: {reason}")
        self.placeholder = placeholder
        self.reason = reason
        self.where = where
