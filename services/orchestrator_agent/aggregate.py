"""AGGREGATE_RESULTS: many agents' answers -> one overall status, per-agent summaries, a Markdown report."""

from __future__ import annotations

from collections import Counter
from typing import Any

from services.orchestrator_agent.models import (
    AgentOutcome,
    AggregateResult,
    AggregateResultsPayload,
    OutcomeSummary,
)
from shared.bus import ResponseStatus

# Worst first: the order failed items are listed in, and what the report leads with.
_SEVERITY: dict[ResponseStatus, int] = {
    ResponseStatus.ERROR: 0,
    ResponseStatus.TIMEOUT: 1,
    ResponseStatus.REJECTED: 2,
    ResponseStatus.PARTIAL: 3,
    ResponseStatus.SUCCESS: 4,
}
# Result fields worth quoting in a one-line summary, in the order they are looked for.
_HEADLINE_KEYS = ("verdict", "outcome", "status", "summary", "message", "commit", "branch", "release_id")
_MAX_SUMMARY = 300


def aggregate_results(payload: AggregateResultsPayload) -> AggregateResult:
    items = sorted(enumerate(payload.results), key=lambda pair: (_SEVERITY[pair[1].status], pair[0]))
    summaries = [_summarise(outcome) for _, outcome in items]
    counts = Counter(o.status.value for o in payload.results)
    result = AggregateResult(
        status=_overall(payload.results),
        counts={s.value: counts.get(s.value, 0) for s in _SEVERITY},
        items=summaries,
        report="",
        total_processing_time_ms=round(sum(o.processing_time_ms for o in payload.results), 3),
    )
    return result.model_copy(update={"report": _report(payload.title, result)})


def _overall(outcomes: list[AgentOutcome]) -> ResponseStatus:
    statuses = {o.status for o in outcomes}
    if statuses == {ResponseStatus.SUCCESS}:
        return ResponseStatus.SUCCESS
    if ResponseStatus.SUCCESS in statuses or ResponseStatus.PARTIAL in statuses:
        return ResponseStatus.PARTIAL
    return ResponseStatus.ERROR  # nothing succeeded, even partly


def _summarise(outcome: AgentOutcome) -> OutcomeSummary:
    if outcome.status != ResponseStatus.SUCCESS and outcome.error:
        text = outcome.error
    else:
        text = _headline(outcome.result) or (outcome.error or "no result")
    text = " ".join(text.split())
    if len(text) > _MAX_SUMMARY:
        text = text[: _MAX_SUMMARY - 3] + "..."
    return OutcomeSummary(
        agent=outcome.agent,
        step=outcome.step,
        request_type=outcome.request_type,
        status=outcome.status,
        summary=text,
    )


def _headline(result: dict[str, Any] | None) -> str:
    if not result:
        return ""
    parts = [
        f"{key}: {result[key]}" for key in _HEADLINE_KEYS if isinstance(result.get(key), str | int | float)
    ]
    if parts:
        return "; ".join(parts[:3])
    return f"result fields: {', '.join(sorted(result)[:6])}"


def _report(title: str, result: AggregateResult) -> str:
    counted = ", ".join(f"{n} {status}" for status, n in result.counts.items() if n)
    lines = [
        f"# {title}",
        "",
        f"**Overall: {result.status.value}** "
        f"({counted}; {result.total_processing_time_ms:.0f} ms of agent time)",
        "",
        "| status | agent | step | request | summary |",
        "|---|---|---|---|---|",
    ]
    for item in result.items:
        cells = [item.status.value, item.agent, item.step or "", item.request_type or "", item.summary]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
