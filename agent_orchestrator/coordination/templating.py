"""Placeholders in pattern files: the grammar of the phase files (agent_orchestrator/tickets/variables.py)
with the namespaces a pattern adds.

`{namespace.field.more}`; a segment after the first may be a list index (`findings.0`). `{{` and `}}`
are literal braces; any other brace is an error, so a typo never passes as text. A string that is
exactly one placeholder becomes the value itself (a list stays a list); inside longer text a value is
substituted as text (strings as they are, anything else as JSON). A missing or null value is an error
naming the placeholder: a task is never sent with a half-filled payload.

Namespaces: `ticket`, `repo`, `context` (the ticket, as in phase files), `params` (the pattern's
parameters), `steps` (the result of another step of the pattern), `part` (a split step's part),
`loop` (the round and the carried values inside a loop).

The phase files' placeholders (agent_orchestrator/tickets/variables.py) use these same functions:
tickets imports coordination (phases apply patterns), never the other way round.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from agent_orchestrator.coordination.errors import TemplateError

NAMESPACES = ("ticket", "repo", "context", "params", "steps", "part", "loop")
# The fields template_variables() gives a ticket (agent_orchestrator/tickets/variables.py).
TICKET_FIELDS = (
    "id",
    "title",
    "description",
    "priority",
    "labels",
    "created_by",
    "phase",
    "status",
    "phase_file",
)
REPO_FIELDS = ("path", "name", "base_branch", "head_branch")

_PLACEHOLDER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_-]+)*")
MISSING: Any = object()  # what get_path answers for a path that is not there


@dataclass(frozen=True)
class Placeholder:
    """One `{...}`: its text as written and its path (`("steps", "review", "verdict")`)."""

    text: str
    path: tuple[str, ...]

    @property
    def namespace(self) -> str:
        return self.path[0]


Part = str | Placeholder


@lru_cache(maxsize=4096)
def parse_template(text: str, example: str = "params.x") -> tuple[Part, ...]:
    """Literal text and placeholders in order; TemplateError on a stray brace (its message shows
    `{example}` as what a placeholder looks like)."""
    parts: list[Part] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "}":
            if text.startswith("}}", i):
                literal.append("}")
                i += 2
                continue
            raise TemplateError(text, f"unmatched '}}' at offset {i} (write '}}}}' for a literal brace)")
        if char != "{":
            literal.append(char)
            i += 1
            continue
        if text.startswith("{{", i):
            literal.append("{")
            i += 2
            continue
        end = text.find("}", i)
        inner = text[i + 1 : end] if end != -1 else ""
        if end == -1 or not _PLACEHOLDER.fullmatch(inner):
            shown = text[i : end + 1] if end != -1 else text[i:]
            raise TemplateError(
                text, f"{shown!r} is not a placeholder like {{{example}}} (write '{{{{' for a literal brace)"
            )
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append(Placeholder(text[i : end + 1], tuple(inner.split("."))))
        i = end + 1
    if literal:
        parts.append("".join(literal))
    return tuple(parts)


def sole_placeholder(text: str) -> Placeholder | None:
    """The placeholder a string consists of, when it is exactly one (it then keeps the value's type)."""
    parts = parse_template(text)
    return parts[0] if len(parts) == 1 and isinstance(parts[0], Placeholder) else None


def walk_strings(value: Any, key: str) -> Iterator[tuple[str, str]]:
    """Every string in a JSON value with its key path (`payload.files[0]`); mapping keys are literal."""
    if isinstance(value, str):
        yield key, value
    elif isinstance(value, Mapping):
        for name, item in value.items():
            yield from walk_strings(item, f"{key}.{name}" if key else str(name))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from walk_strings(item, f"{key}[{index}]")


def placeholders(value: Any, key: str) -> Iterator[tuple[str, Placeholder]]:
    """Every placeholder in a JSON value, with the key path of the string holding it."""
    for where, text in walk_strings(value, key):
        for part in parse_template(text):
            if isinstance(part, Placeholder):
                yield where, part


def get_path(value: Any, path: str | tuple[str, ...]) -> Any:
    """The value at a dotted path (`decided_by.verdict`, `findings.0.file`), or MISSING."""
    segments = path.split(".") if isinstance(path, str) else path
    current = value
    for segment in segments:
        if isinstance(current, Mapping):
            current = current.get(segment, MISSING)
        elif isinstance(current, list | tuple) and segment.isdigit() and int(segment) < len(current):
            current = current[int(segment)]
        else:
            return MISSING
        if current is MISSING:
            return MISSING
    return current


def lookup(placeholder: Placeholder, variables: Mapping[str, Any]) -> Any:
    """The value a placeholder names; TemplateError saying which segment is missing, or that it is null."""
    current: Any = variables
    for depth, segment in enumerate(placeholder.path):
        where = ".".join(placeholder.path[:depth]) or "the variables"
        found = get_path(current, (segment,))
        if found is MISSING:
            if isinstance(current, Mapping):
                known = ", ".join(sorted(map(str, current))) or "nothing"
                reason = f"{where} has no {segment!r} (it has: {known})"
            elif isinstance(current, list | tuple):
                reason = f"{where} is a list of {len(current)}; {segment!r} is not an index in it"
            else:
                reason = f"{where} is {json.dumps(current, default=str)}, which has no field {segment!r}"
            raise TemplateError(placeholder.text, reason)
        current = found
    if current is None:
        raise TemplateError(placeholder.text, f"{'.'.join(placeholder.path)} has no value (null)")
    return current


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def resolve(
    value: Any, variables: Mapping[str, Any], *, where: str = "", key: str = "", example: str = "params.x"
) -> Any:
    """A copy of a JSON value with every placeholder in its strings resolved (mapping keys stay literal).
    A TemplateError says where the placeholder was: `where` (the template) and the key path in `value`."""
    if isinstance(value, str):
        try:
            parts = parse_template(value, example)
            if len(parts) == 1 and isinstance(parts[0], Placeholder):
                return lookup(parts[0], variables)
            return "".join(p if isinstance(p, str) else _as_text(lookup(p, variables)) for p in parts)
        except TemplateError as exc:
            location = f"{where}: {key}" if where and key else where or key
            raise TemplateError(exc.placeholder, exc.reason, where=location) from None
    if isinstance(value, Mapping):
        return {
            name: resolve(
                item, variables, where=where, key=f"{key}.{name}" if key else str(name), example=example
            )
            for name, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [
            resolve(item, variables, where=where, key=f"{key}[{i}]", example=example)
            for i, item in enumerate(value)
        ]
    return value


def canonical(value: Any) -> str:
    """One text per JSON value, whatever the order of its keys: how merges compare values."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
