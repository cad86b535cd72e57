"""Context passing between a ticket's phases: what a phase's tasks found, aggregated into sections,
and a bounded summary of every phase so far for the next phase's tasks.

The ticket's context (a jsonb object, versioned with the ticket) keeps each succeeded task's raw
result under its task key, as before, plus two reserved keys no task key can take (task keys are
lower_case identifiers; reserved keys start with '_'):

- `_sections`: {"schema", "order": [phase, ...] (least recent first), "phases": {PHASE: aggregate}},
  every phase's full aggregate (`aggregate_phase`), re-aggregated when a phase runs again;
- `_summary`: `summarize(_sections)`, at most `max_chars` characters of compact JSON: what the next
  phase gets. With an LLM configured it also carries the model's prose; a model that fails costs
  the prose only.

An entry of any section carries `task` (key), `task_id`, `agent`, `phase`, `at` (when the task
finished), `severity` (error, warning, info) and `failure` (the work did not succeed), then fields
of its own (`context_sections`: what each request type's result says). Everything is bounded:
strings, lists, entries per section, a phase's size, phases kept.
`context_update_for_phase` is what the ticket workflow merges at the end of a phase
(`TicketStore.update_context(..., allow_reserved=True)`). With a chat model it blocks on the model
(at most `shared.llm.PROSE_TIMEOUT_SECONDS`): call it from a thread.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel

from agent_orchestrator.tasks import Task, TaskStatus
from agent_orchestrator.tickets.context_sections import (
    SECTION_NAMES,
    SEVERITY_RANK,
    as_dict,
    as_list,
    clip,
    roster_entry,
    task_entries,
)
from agent_orchestrator.tickets.models import Ticket
from shared.config import Settings
from shared.llm import LLMConfigError, chat_model_from_settings, optional_prose

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SECTIONS_KEY = "_sections"
SUMMARY_KEY = "_summary"
RESERVED_KEYS = frozenset({SECTIONS_KEY, SUMMARY_KEY})
NOTES_KEY = "notes"  # a person's notes for the next phases (POST /api/v1/tickets/{id}/context)
# What a person may set: a task key (phase files and plans use lower_case identifiers) or `notes`.
# Reserved keys start with '_', so neither can ever collide with them.
CONTEXT_KEY_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
FINDINGS = "review_findings"
_STORE_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,99}$")  # what the store takes, minus reserved keys

MAX_ENTRIES = 200  # per section and phase
MAX_ROSTER = 100  # tasks listed per phase; `tasks` counts them all
# A phase's aggregate and the phases kept: 16 x 128 KiB stays well inside the store's 8 MiB a value.
MAX_PHASE_CHARS = 128 * 1024
MAX_PHASES = 16
DEFAULT_SUMMARY_CHARS = 8000
MIN_SUMMARY_CHARS = 3000  # room for the fixed fields, a note and the prose's share
MAX_SUMMARY_CHARS = 200_000
MAX_PROSE_CHARS = 2000
MAX_NOTES_CHARS = 1000
PROSE_SYSTEM = (
    "You brief the agents of the next phase of a software-delivery ticket. From the JSON summary of "
    "what the earlier phases found, write plain prose of at most {limit} characters: failures and "
    "open questions first, then decisions, then what changed, was tested, deployed and documented. "
    "Use only facts from the material."
)


# -- ranking and fitting ----------------------------------------------------------------------------


def _size(value: Any) -> int:
    """Characters of compact JSON; non-ASCII escaped, so never fewer than the stored bytes need."""
    return len(json.dumps(value, separators=(",", ":"), default=str))


Item = tuple[str, int, dict[str, Any]]  # (section, position in its source order, entry)


def _ranked(items: Iterable[Item], phase_order: Mapping[str, int]) -> list[Item]:
    """Failures, then decisions, then what each task produced (test results, deployments, files,
    documents), then review findings (details of a verdict already among the decisions); each group
    by severity, then the latest phase first, then by section, then the latest `at` first; ties keep
    their source order."""
    by_time = sorted(items, key=lambda item: str(item[2].get("at") or ""), reverse=True)
    section_rank = {name: i for i, name in enumerate(SECTION_NAMES)}

    def group(item: Item) -> int:
        return (
            0 if item[2].get("failure") else 1 if item[0] == "decisions" else 3 if item[0] == FINDINGS else 2
        )

    return sorted(
        by_time,
        key=lambda item: (
            group(item),
            SEVERITY_RANK.get(item[2].get("severity"), 2),
            -phase_order.get(item[2].get("phase"), -1),
            section_rank.get(item[0], len(section_rank)),
        ),
    )


def _fit(ranked: Sequence[Item], build: Callable[[int], dict[str, Any]], max_chars: int) -> dict[str, Any]:
    """build(n) for the longest prefix of `ranked` that keeps it within max_chars (n may be 0)."""
    used, n = _size(build(0)), 0
    for _section, _position, entry in ranked:  # an estimate from above: each entry and its comma
        used += _size(entry) + 1
        if used > max_chars:
            break
        n += 1
    result = build(n)
    while n > 0 and _size(result) > max_chars:
        n -= 1
        result = build(n)
    return result


def _grouped(kept: Iterable[Item], natural: bool) -> dict[str, list[dict[str, Any]]]:
    chosen = sorted(kept, key=lambda item: item[1]) if natural else list(kept)
    return {name: [entry for section, _, entry in chosen if section == name] for name in SECTION_NAMES}


# -- aggregation ------------------------------------------------------------------------------------


def aggregate_phase(phase: str, tasks: Sequence[Task]) -> dict[str, Any]:
    """The sections of one phase's tasks: succeeded tasks by what their results say, every other
    task an open question with its error. Bounded: MAX_ENTRIES per section (the lowest ranked are
    left out first) and MAX_PHASE_CHARS in all; `truncated` counts what was left out, by section."""
    items: list[Item] = []
    for task in tasks:
        for section, entry in task_entries(task, phase):
            items.append((section, len(items), entry))
    ranked = _ranked(items, {phase: 0})
    capped: list[Item] = []
    per_section: Counter[str] = Counter()
    for item in ranked:
        per_section[item[0]] += 1
        if per_section[item[0]] <= MAX_ENTRIES:
            capped.append(item)
    statuses = Counter(task.status.value for task in tasks)
    roster = [roster_entry(task) for task in tasks[:MAX_ROSTER]]

    def build(n: int) -> dict[str, Any]:
        left_out = Counter(section for section, _, _ in ranked) - Counter(s for s, _, _ in capped[:n])
        return {
            "schema": SCHEMA_VERSION,
            "phase": phase,
            "tasks": {"total": len(tasks), "by_status": dict(sorted(statuses.items()))},
            "roster": roster,
            "sections": _grouped(capped[:n], natural=True),
            "truncated": {name: left_out[name] for name in SECTION_NAMES if left_out[name]},
        }

    return _fit(capped, build, MAX_PHASE_CHARS)


def merge_phase(stored: Any, aggregate: Mapping[str, Any]) -> dict[str, Any]:
    """`_sections` with `aggregate` as its latest phase (a phase run again replaces its earlier
    aggregate); the least recent phases beyond MAX_PHASES are dropped."""
    stored = as_dict(stored)
    phase = str(aggregate["phase"])
    phases = {str(k): v for k, v in as_dict(stored.get("phases")).items() if isinstance(v, dict)}
    phases[phase] = dict(aggregate)
    order = [p for p in as_list(stored.get("order")) if p in phases and p != phase] + [phase]
    order = order[-MAX_PHASES:]
    return {"schema": SCHEMA_VERSION, "order": order, "phases": {p: phases[p] for p in order}}


# -- summary ----------------------------------------------------------------------------------------


def _phases(sections: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The phase aggregates, least recent first, of `_sections` or of one `aggregate_phase`."""
    if "sections" in sections:
        return [dict(sections)]
    phases = as_dict(sections.get("phases"))
    return [phases[p] for p in as_list(sections.get("order")) if isinstance(phases.get(p), dict)]


def _compact(entry: dict[str, Any], max_chars: int) -> dict[str, Any]:
    """The entry with its log tail shortened to an eighth of the budget: one failing log must not
    crowd out every other failure and decision (the stored sections keep the longer tail)."""
    tail, limit = entry.get("log_tail"), max_chars // 8
    if isinstance(tail, str) and len(tail) > limit:
        return entry | {"log_tail": "…" + tail[-(limit - 1) :]}
    return entry


def summarize(
    sections: Mapping[str, Any],
    max_chars: int = DEFAULT_SUMMARY_CHARS,
    *,
    chat_model: BaseChatModel | None = None,
    notes: Any = None,
) -> dict[str, Any]:
    """At most `max_chars` characters (compact JSON) of `sections` (`_sections` or one phase's
    aggregate): failures and decisions first, then the rest by severity and recency; what does not
    fit is left out and counted in `dropped` (by section) with a `note`. With a chat model, a
    quarter of the budget (at most MAX_PROSE_CHARS) is kept for its `prose`; when the model fails,
    `prose_warning` says why and the rest is unchanged."""
    if not MIN_SUMMARY_CHARS <= max_chars <= MAX_SUMMARY_CHARS:
        raise ValueError(f"max_chars: must be {MIN_SUMMARY_CHARS} to {MAX_SUMMARY_CHARS} (got {max_chars})")
    phases = _phases(sections)
    order = {str(aggregate.get("phase")): i for i, aggregate in enumerate(phases)}
    reserve = min(MAX_PROSE_CHARS, max_chars // 4) if chat_model is not None else 0
    budget = max_chars - reserve  # what the deterministic part may fill
    items: list[Item] = []
    for aggregate in phases:
        for name in SECTION_NAMES:
            for entry in as_list(as_dict(aggregate.get("sections")).get(name)):
                if isinstance(entry, dict):
                    items.append((name, len(items), _compact(entry, budget)))
    ranked = _ranked(items, order)
    counts = Counter(name for name, _, _ in items)
    notes_text = clip(notes, MAX_NOTES_CHARS) if notes else None

    def build(n: int) -> dict[str, Any]:
        left_out = Counter(name for name, _, _ in ranked[n:])
        dropped = {name: left_out[name] for name in SECTION_NAMES if left_out[name]}
        return {
            "schema": SCHEMA_VERSION,
            "phase": str(phases[-1].get("phase")) if phases else None,
            "max_chars": max_chars,
            "sections": _grouped(ranked[:n], natural=False),
            "counts": {name: counts[name] for name in SECTION_NAMES},
            "dropped": dropped,
            "note": _note(dropped, max_chars) if dropped else None,
            "notes": notes_text,
            "prose": None,
            "prose_warning": None,
        }

    # Notes of escaped characters (6 each) could outgrow the budget on their own: they give way.
    summary = _shortened(_fit(ranked, build, budget), "notes", budget)
    return _with_prose(summary, chat_model, max_chars) if chat_model is not None else summary


def _note(dropped: Mapping[str, int], max_chars: int) -> str:
    what = ", ".join(f"{count} {name}" for name, count in dropped.items())
    return (
        f"left out the lowest ranked entries ({what}) to stay within {max_chars} characters; "
        f"every entry is kept in the ticket's context under {SECTIONS_KEY}"
    )


def _shortened(summary: dict[str, Any], field: str, max_chars: int) -> dict[str, Any]:
    """Cut summary[field] (a string) until the summary fits; JSON escapes make one cut not always enough."""
    while summary[field] and _size(summary) > max_chars:
        text: str = summary[field]
        keep = len(text) - (_size(summary) - max_chars) - 1
        summary[field] = text[: max(keep, 0)].rstrip() + "…" if keep > 0 else None
    return summary


def _with_prose(summary: dict[str, Any], chat_model: BaseChatModel, max_chars: int) -> dict[str, Any]:
    limit = max(0, min(MAX_PROSE_CHARS, max_chars - _size(summary) - 2))
    fields = ("phase", "sections", "counts", "dropped", "notes")
    material = json.dumps({k: summary[k] for k in fields}, ensure_ascii=False, default=str)
    prose = optional_prose(chat_model, PROSE_SYSTEM.format(limit=limit), material)
    if prose.text is None:
        summary["prose_warning"] = clip(prose.warning, 300)
        return _shortened(summary, "prose_warning", max_chars)
    summary["prose"] = clip(prose.text, max(limit, 1))
    return _shortened(summary, "prose", max_chars)


# -- what the workflow stores -----------------------------------------------------------------------


def summary_chat_model(settings: Settings) -> BaseChatModel | None:
    """The model DEVTOOLS_LLM names, or None; a broken setting is logged and costs the prose only."""
    try:
        return chat_model_from_settings(settings)
    except LLMConfigError as exc:
        log.warning("no LLM for context summaries", extra={"error": str(exc)})
        return None


def context_update_for_phase(
    ticket: Ticket,
    phase: str,
    tasks: Sequence[Task],
    *,
    chat_model: BaseChatModel | None = None,
    max_chars: int = DEFAULT_SUMMARY_CHARS,
) -> dict[str, Any]:
    """What to merge into the ticket's context at the end of `phase` (key -> value): each succeeded
    task's raw result under its key, `_sections` with this phase's aggregate, and the new `_summary`
    (including the person's `notes`, if any). Write it in one statement:
    `TicketStore.update_context(ticket.id, update, expected_version=ticket.version, allow_reserved=True)`."""
    sections = merge_phase(ticket.context.get(SECTIONS_KEY), aggregate_phase(phase, tasks))
    summary = summarize(sections, max_chars, chat_model=chat_model, notes=ticket.context.get(NOTES_KEY))
    update: dict[str, Any] = {
        task.key: task.result
        for task in tasks
        if task.status is TaskStatus.SUCCEEDED and _STORE_KEY.match(task.key)
    }
    update[SECTIONS_KEY] = sections
    update[SUMMARY_KEY] = summary
    return update
