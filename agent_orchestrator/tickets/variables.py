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

from collections.abc import Collection, Mapping
from pathlib import PurePosixPath
from typing import Any

from agent_orchestrator.coordination import templating
from agent_orchestrator.coordination.errors import TemplateError
from agent_orchestrator.coordination.templating import (
    REPO_FIELDS,
    TICKET_FIELDS,
    Part,
    Placeholder,
    walk_strings,
)
from agent_orchestrator.tickets.errors import VariableError
from agent_orchestrator.tickets.models import Ticket

# The grammar and the resolution are coordination's (coordination/templating.py, which pattern files
# use too); here the namespaces of a phase file, and VariableError for what goes wrong.
NAMESPACES = ("ticket", "repo", "context")
EXAMPLE = "ticket.title"

__all__ = [
    "NAMESPACES",
    "REPO_FIELDS",
    "TICKET_FIELDS",
    "Part",
    "Placeholder",
    "parse_template",
    "placeholder_problem",
    "resolve",
    "template_variables",
    "walk_strings",
]


def _variable_error(exc: TemplateError) -> VariableError:
    return VariableError(exc.placeholder, exc.reason, where=exc.where)


def parse_template(text: str) -> tuple[Part, ...]:
    """Literal text and placeholders in order; VariableError(text, reason) on a stray brace."""
    try:
        return templating.parse_template(text, EXAMPLE)
    except TemplateError as exc:
        raise _variable_error(exc) from None


def resolve(value: Any, variables: Mapping[str, Any], *, where: str = "", key: str = "") -> Any:
    """A copy of a JSON value with every placeholder in its strings resolved (dict keys stay literal).

    A VariableError says where the placeholder was: `where` (the template) and the key path in `value`.
    """
    try:
        return templating.resolve(value, variables, where=where, key=key, example=EXAMPLE)
    except TemplateError as exc:
        raise _variable_error(exc) from None


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
