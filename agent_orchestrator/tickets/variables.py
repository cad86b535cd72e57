"""Template variables: `{ticket.title}`, `{repo.path}`, `{context.review.findings.0.file}` in the
task templates of a phase file, resolved against a ticket.

Grammar: `{namespace.field.more}`; a segment after the first may be a list index (`findings.0`).
`{{` and `}}` are literal braces; any other brace is an error, so a typo never passes as text.

Resolution keeps JSON types where it can: a string that is exactly one placeholder becomes the
value itself (a list stays a list, a number a number); placeholders inside a longer string are
substituted as text (strings as they are, anything else as JSON). A value that is missing or
null at resolve time raises VariableError naming the placeholder: a task must never be sent with
a half-filled payload.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import PurePosixPath
from typing import Any

from agent_orchestrator.tickets.errors import VariableError
from agent_orchestrator.tickets.models import Ticket

NAMESPACES = ("ticket", "repo", "context")
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


@dataclass(frozen=True)
class Placeholder:
    """One `{...}` in a template: its text as written and its path (`("context", "review", "findings")`)."""

    text: str
    path: tuple[str, ...]

    @property
    def namespace(self) -> str:
        return self.path[0]


Part = str | Placeholder


@lru_cache(maxsize=4096)
def parse_template(text: str) -> tuple[Part, ...]:
    """Literal text and placeholders in order; VariableError(text, reason) on a stray brace."""
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
            raise VariableError(text, f"unmatched '}}' at offset {i} (write '}}}}' for a literal brace)")
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
            raise VariableError(
                text,
                f"{shown!r} is not a placeholder like {{ticket.title}} (write '{{{{' for a literal brace)",
            )
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append(Placeholder(text[i : end + 1], tuple(inner.split("."))))
        i = end + 1
    if literal:
        parts.append("".join(literal))
    return tuple(parts)


def walk_strings(value: Any, key: str) -> Iterator[tuple[str, str]]:
    """Every string in a JSON value with its key path (`payload.files[0]`); dict keys are literal."""
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


def placeholder_problem(placeholder: Placeholder, context_keys: Collection[str]) -> str | None:
    """Why the placeholder can never resolve (None when it can): unknown namespace or field, or a
    context key that is not among `context_keys` (the tasks whose results will be in the context)."""
    namespace, rest = placeholder.namespace, placeholder.path[1:]
    if namespace not in NAMESPACES:
        return (
            f"unknown variable namespace {namespace!r} in {placeholder.text} (known: {', '.join(NAMESPACES)})"
        )
    if not rest:
        return f"{placeholder.text} names a whole namespace; name a field, e.g. {{{namespace}.…}}"
    field = rest[0]
    if namespace == "ticket":
        if field not in TICKET_FIELDS:
            return f"unknown ticket field {field!r} in {placeholder.text} (known: {', '.join(TICKET_FIELDS)})"
        if len(rest) > 1 and not (field == "labels" and len(rest) == 2 and rest[1].isdigit()):
            return f"ticket.{field} has no fields: {placeholder.text}"
    elif namespace == "repo":
        if field not in REPO_FIELDS:
            return f"unknown repo field {field!r} in {placeholder.text} (known: {', '.join(REPO_FIELDS)})"
        if len(rest) > 1:
            return f"repo.{field} has no fields: {placeholder.text}"
    elif field not in context_keys:
        known = ", ".join(sorted(context_keys)) or "none"
        return f"{placeholder.text}: {field!r} is not a task of an earlier phase (earlier tasks: {known})"
    return None


def template_variables(ticket: Ticket) -> dict[str, Any]:
    """What placeholders resolve against for this ticket: {ticket: ..., repo: ..., context: ...}."""
    return {
        "ticket": {
            "id": str(ticket.id),
            "title": ticket.title,
            "description": ticket.description,
            "priority": ticket.priority.value,
            "labels": list(ticket.labels),
            "created_by": ticket.created_by,
            "phase": ticket.phase,
            "status": ticket.status.value,
            "phase_file": ticket.phase_file,
        },
        "repo": {
            "path": ticket.repo_path,
            # As the pr_deployment workflow names its `repo:<name>` lock, so both take the same lock.
            "name": PurePosixPath(ticket.repo_path).name or "repo",
            "base_branch": ticket.base_branch,
            "head_branch": ticket.head_branch,
        },
        "context": ticket.context,
    }


def lookup(placeholder: Placeholder, variables: Mapping[str, Any]) -> Any:
    """The value a placeholder names; VariableError when it is missing or null."""
    current: Any = variables
    for depth, segment in enumerate(placeholder.path):
        where = ".".join(placeholder.path[:depth]) or "the variables"
        if isinstance(current, Mapping):
            if segment not in current:
                known = ", ".join(sorted(map(str, current))) or "nothing"
                raise VariableError(placeholder.text, f"{where} has no {segment!r} (it has: {known})")
            current = current[segment]
        elif isinstance(current, list):
            if not segment.isdigit() or int(segment) >= len(current):
                raise VariableError(
                    placeholder.text,
                    f"{where} is a list of {len(current)}; {segment!r} is not an index in it",
                )
            current = current[int(segment)]
        else:
            raise VariableError(
                placeholder.text, f"{where} is {json.dumps(current)}, which has no field {segment!r}"
            )
    if current is None:
        raise VariableError(placeholder.text, f"{'.'.join(placeholder.path)} has no value (null)")
    return current


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def resolve_string(text: str, variables: Mapping[str, Any]) -> Any:
    parts = parse_template(text)
    if len(parts) == 1 and isinstance(parts[0], Placeholder):
        return lookup(parts[0], variables)
    return "".join(part if isinstance(part, str) else _as_text(lookup(part, variables)) for part in parts)


def resolve(value: Any, variables: Mapping[str, Any], *, where: str = "", key: str = "") -> Any:
    """A copy of a JSON value with every placeholder in its strings resolved (dict keys stay literal).

    A VariableError says where the placeholder was: `where` (the template) and the key path in `value`.
    """
    if isinstance(value, str):
        try:
            return resolve_string(value, variables)
        except VariableError as exc:
            location = f"{where}: {key}" if where and key else where or key
            raise VariableError(exc.placeholder, exc.reason, where=location) from None
    if isinstance(value, Mapping):
        return {
            name: resolve(item, variables, where=where, key=f"{key}.{name}" if key else str(name))
            for name, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [resolve(item, variables, where=where, key=f"{key}[{i}]") for i, item in enumerate(value)]
    return value
