"""What a task's result says, as entries of the context's sections (see `tickets.context`).

One extractor per agent request type reads the real result shape of that agent (services/*/models.py,
services/cicd/pipeline.py, services/infrastructure/contract.py) defensively: results are stored JSON,
and a field missing or of another type is left out rather than failing the phase. A task that did not
succeed is an open question with its error. Every string and list is bounded here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from agent_orchestrator.tasks import Task, TaskStatus

log = logging.getLogger(__name__)

# In the order a tie in rank is broken: outcomes before the findings that explain them.
SECTION_NAMES = ("decisions", "open_questions", "test_results", "deployments", "files_changed", "documents")
SECTION_NAMES += ("review_findings",)
SEVERITY_RANK = {"error": 0, "warning": 1, "info": 2}
REVIEW_STATS = ("files_changed", "lines_added", "lines_deleted", "python_files_linted")
COVERAGE_FIELDS = ("changed_lines_percent", "changed_lines", "covered_lines", "total_percent", "base")
MAX_TEXT = 500  # any string of an entry
MAX_LOG_TAIL = 2000  # the end of a failing log is where the failure is
MAX_LIST = 50  # files of a change, steps of a plan, keys of a config change

Found = Iterator[tuple[str, dict[str, Any]]]  # (section, the entry's own fields)
Extractor = Callable[[Task, dict[str, Any]], Found]
_EXTRACTORS: dict[str, Extractor] = {}


def clip(value: Any, limit: int = MAX_TEXT) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _tail(value: Any, limit: int = MAX_LOG_TAIL) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return value if len(value) <= limit else "…" + value[-(limit - 1) :]


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _pick(result: Mapping[str, Any], *names: str, **renamed: str) -> dict[str, Any]:
    """The scalar fields `names` (and entry name = result field `renamed`) of a result, strings
    clipped; anything else (missing, null, a list where a scalar was expected) is left out."""
    picked: dict[str, Any] = {}
    for name, field in [*((n, n) for n in names), *renamed.items()]:
        value = result.get(field)
        if isinstance(value, str):
            picked[name] = clip(value)
        elif isinstance(value, bool | int | float):
            picked[name] = value
    return picked


# -- what each request type's result says -----------------------------------------------------------


def _extracts(*request_types: str) -> Callable[[Extractor], Extractor]:
    def register(extractor: Extractor) -> Extractor:
        for request_type in request_types:
            _EXTRACTORS[request_type] = extractor
        return extractor

    return register


def _problem(failing: bool) -> dict[str, Any]:
    return {"severity": "error" if failing else "info", "failure": failing}


@_extracts("REVIEW_CODE")
def _review(task: Task, r: dict[str, Any]) -> Found:
    findings = [f for f in as_list(r.get("findings")) if isinstance(f, dict)]
    verdict = {"kind": "review_verdict", **_pick(r, "base_commit", "head_commit", decision="verdict")}
    verdict |= _pick(as_dict(r.get("decided_by")), "rule", "reason")
    verdict |= {"findings": len(findings), "stats": _pick(as_dict(r.get("stats")), *REVIEW_STATS)}
    yield "decisions", verdict | {"severity": "warning" if r.get("verdict") == "request_changes" else "info"}
    for f in findings:
        severity = f.get("severity") if f.get("severity") in SEVERITY_RANK else "info"
        finding = _pick(f, "file", "line", "rule", "category", "message")
        yield "review_findings", finding | {"severity": severity, "commit": clip(r.get("head_commit"))}


@_extracts("RUN_PIPELINE", "VALIDATE_BUILD")
def _pipeline(task: Task, r: dict[str, Any]) -> Found:
    tests = task.request_type == "RUN_PIPELINE"
    failing = r.get("status") != ("passed" if tests else "succeeded")
    counts = ("passed", "failed", "skipped", "errors", "total") if tests else ()
    entry = {"kind": "tests" if tests else "build"}
    entry |= _pick(r, "status", *counts, "commit", "ref", "command", "duration_seconds")
    if not tests:
        entry["artifacts"] = len(as_list(r.get("artifacts")))
    if coverage := as_dict(r.get("coverage")):  # only when the task asked for a coverage_base
        entry["coverage"] = _pick(coverage, *COVERAGE_FIELDS)
    if failing:  # what a person or the next agent needs to see why
        entry |= {"log_tail": _tail(r.get("log_tail")), **_pick(r, "diagnosis")}
    yield "test_results", entry | _problem(failing)


@_extracts("DEPLOY_SERVICE", "DEPLOY_ARTIFACT")
def _deploy(task: Task, r: dict[str, Any]) -> Found:
    health, artifact = as_dict(r.get("health")), as_dict(r.get("artifact"))
    entry = {"kind": "deploy", **_pick(r, "environment", "status", release="release_id")}
    entry |= _pick(r, "active_release", "previous_release", "message", "failure_reason")
    # The result names no commit: a cicd artifact's manifest does, else the ref the task deployed.
    entry |= _pick({"commit": artifact.get("commit") or task.payload.get("ref")}, "commit")
    entry |= _pick(health, "url", "healthy")
    yield "deployments", entry | _problem(r.get("status") != "deployed")


@_extracts("HEALTH_CHECK", "RESTART")
def _health(task: Task, r: dict[str, Any]) -> Found:
    failing = r.get("healthy") is not True
    kind = "health_check" if task.request_type == "HEALTH_CHECK" else "restart"
    entry = {"kind": kind, "healthy": not failing} | _pick(
        r, "environment", "status", "url", "reason", release="release_id"
    )
    if failing:
        entry |= _pick(r, "diagnosis")
    yield "deployments", entry | _problem(failing)


@_extracts("ROLLBACK", "UPDATE_CONFIG", "STOP")
def _environment_change(task: Task, r: dict[str, Any]) -> Found:
    kind = {"ROLLBACK": "rollback", "UPDATE_CONFIG": "config", "STOP": "stop"}[task.request_type]
    failing = r.get("status") in ("failed", "reverted")
    entry = {"kind": kind, **_pick(r, "environment", "status", "stopped", "restarted", "message")}
    entry |= _pick(r, release="to_release", previous_release="from_release") or _pick(r, release="release_id")
    if keys := as_list(r.get("keys_changed")):
        entry["keys_changed"] = [clip(key, 100) for key in keys[:MAX_LIST]]
    # A rollback that worked still means what was live is gone: worth a look, not a failure.
    severity = "error" if failing else "warning" if kind == "rollback" else "info"
    yield "deployments", entry | {"severity": severity, "failure": failing}


@_extracts("GENERATE_CODE", "REFACTOR_CODE")
def _change(task: Task, r: dict[str, Any]) -> Found:
    files = [f for f in as_list(r.get("files")) if isinstance(f, dict)]
    entry = _pick(r, "kind", "outcome", "branch", "commit", "base_commit", "files_changed")
    entry |= _pick(r, "insertions", "deletions")
    entry["files"] = [_pick(f, "path", "status", "insertions", "deletions") for f in files[:MAX_LIST]]
    if len(files) > MAX_LIST:
        entry["files_omitted"] = len(files) - MAX_LIST
    yield "files_changed", entry


@_extracts("GENERATE_DOCS", "UPDATE_README")
def _document(task: Task, r: dict[str, Any]) -> Found:
    text = next((v for v in (r.get("markdown"), r.get("section_text")) if isinstance(v, str)), "")
    title = next((line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")), None)
    entry = _pick(r, "doc_type", "ref", "commit", "branch", "changed", path="output_path")
    entry |= _pick(r, doc_type="section", path="readme") if "section" in r else {}
    entry |= _pick({"title": title}, "title") | {"chars": len(text)}
    if isinstance(r.get("sources"), list):
        entry["sources"] = len(r["sources"])
    yield "documents", entry


@_extracts("DECOMPOSE_TASK", "AGGREGATE_RESULTS")
def _plan(task: Task, r: dict[str, Any]) -> Found:
    if task.request_type == "DECOMPOSE_TASK":
        entry = {"kind": "plan", "decision": clip(r.get("kind") or "free-form plan"), **_pick(r, "source")}
        entry |= {"steps": len(as_list(r.get("steps"))), "order": [clip(s) for s in as_list(r.get("order"))]}
        entry["order"] = entry["order"][:MAX_LIST]
        if notes := "; ".join(str(n) for n in as_list(r.get("notes"))):
            entry["reason"] = clip(notes)
        yield "decisions", entry
    else:
        counts = _pick(as_dict(r.get("counts")), *list(as_dict(r.get("counts")))[:MAX_LIST])
        entry = {"kind": "aggregate", **_pick(r, decision="status"), "counts": counts}
        yield "decisions", entry | {"severity": "info" if r.get("status") == "success" else "warning"}


def _open_question(task: Task) -> tuple[str, dict[str, Any]]:
    """A task that did not succeed: someone has to decide what happens next."""
    question = (
        f"{task.key} ({task.request_type}) {task.status.value} after attempt {task.attempt} of "
        f"{task.max_attempts}: retry it, change its input, or move on without it?"
    )
    entry = {"question": clip(question), "status": task.status.value, "request_type": task.request_type}
    entry["error"] = clip(task.error or task.blocked_reason or task.wait_reason or "no error was recorded")
    if task.error_class is not None:  # retryable or permanent: whether a retry can help
        entry["error_class"] = task.error_class.value
    entry |= _pick({"kind": task.error_kind}, error_kind="kind")
    severity = "warning" if task.status is TaskStatus.CANCELLED else "error"
    return "open_questions", entry | {"severity": severity, "failure": True}


def task_entries(task: Task, phase: str) -> list[tuple[str, dict[str, Any]]]:
    """(section, entry) for each thing the task's result says; each entry starts with `task`,
    `task_id`, `agent`, `phase`, `at`, `severity` and `failure`."""
    found: Iterable[tuple[str, dict[str, Any]]] = ()
    if task.status is not TaskStatus.SUCCEEDED:
        found = [_open_question(task)]
    elif (extract := _EXTRACTORS.get(task.request_type)) and isinstance(task.result, dict):
        try:
            found = list(extract(task, task.result))
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            # A result of an unexpected shape costs its entries, never the phase's context.
            log.warning("task result not aggregated", extra={"task": task.key, "error": str(exc)})
    base = {"task": task.key, "task_id": str(task.id), "agent": task.assigned_agent, "phase": phase}
    base |= {"at": (task.finished_at or task.updated_at).isoformat(), "severity": "info", "failure": False}
    return [(section, base | {k: v for k, v in fields.items() if v is not None}) for section, fields in found]


def roster_entry(task: Task) -> dict[str, Any]:
    """One line of a phase's task list."""
    entry = {"task": task.key, "task_id": str(task.id), "agent": task.assigned_agent}
    return entry | {"request_type": task.request_type, "status": task.status.value, "attempt": task.attempt}
