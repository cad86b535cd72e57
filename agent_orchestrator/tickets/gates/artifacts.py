"""Which artifacts a succeeded task produced, by its request type, and their content bounded.

An artifact is a work product that exists after the task: a review, a test report (also of failing
tests: the report exists), a document, a plan; a branch only when a commit was made, a build only
when it succeeded, a deployment only when the release went live (a rolled-back or failed deploy
leaves nothing deployed; `deploy.healthy` says why). Quality is the business of thresholds, existence
the business of artifacts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from agent_orchestrator.tasks import Task, TaskStatus
from agent_orchestrator.tickets.gates.models import GateArtifact

# The content stored with an artifact: the task's result up to this size, else a summary of it
# (so one huge document or log cannot bloat every read of a ticket's gates).
MAX_CONTENT_BYTES = 64 * 1024
SUMMARY_TEXT_CHARS = 2000
SUMMARY_MAX_KEYS = 60
MAX_REFERENCE_CHARS = 4096

Found = tuple[str, str | None]  # (kind, reference)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _review(result: Mapping[str, Any]) -> list[Found]:
    base, head = _text(result.get("base_commit")), _text(result.get("head_commit"))
    return [("review", f"{base}..{head}" if base and head else head)]


def _test_report(result: Mapping[str, Any]) -> list[Found]:
    return [("test_report", _text(result.get("log_path")) or _text(result.get("run_id")))]


def _deployment(result: Mapping[str, Any]) -> list[Found]:
    if result.get("status") != "deployed":
        return []
    return [("deployment", _text(result.get("release_id")))]


def _document(result: Mapping[str, Any]) -> list[Found]:
    # GENERATE_DOCS: where it was written, else which doc at which commit; UPDATE_README: the file.
    reference = _text(result.get("output_path")) or _text(result.get("readme"))
    if reference is None and _text(result.get("doc_type")):
        at = _text(result.get("commit")) or _text(result.get("ref"))
        reference = f"{result['doc_type']}@{at}" if at else result["doc_type"]
    return [("document", reference)]


def _branch(result: Mapping[str, Any]) -> list[Found]:
    branch = _text(result.get("branch"))
    if result.get("outcome") == "no_change" or branch is None:
        return []
    return [("branch", branch)]


def _build(result: Mapping[str, Any]) -> list[Found]:
    if result.get("status") != "succeeded":
        return []
    return [("build", _text(result.get("build_id")))]


def _plan(result: Mapping[str, Any]) -> list[Found]:
    return [("plan", _text(result.get("kind")) or _text(result.get("source")))]


PRODUCERS: dict[str, Callable[[Mapping[str, Any]], list[Found]]] = {
    "REVIEW_CODE": _review,
    "RUN_PIPELINE": _test_report,
    "DEPLOY_SERVICE": _deployment,
    "DEPLOY_ARTIFACT": _deployment,  # cicd hands the deploy to infrastructure: the same DeployResult
    "GENERATE_DOCS": _document,
    "UPDATE_README": _document,
    "GENERATE_CODE": _branch,
    "REFACTOR_CODE": _branch,
    "VALIDATE_BUILD": _build,
    "DECOMPOSE_TASK": _plan,
}
# What each request type can produce: the load-time check of `artifact` criteria reads it.
ARTIFACT_OF_REQUEST: dict[str, str] = {
    "REVIEW_CODE": "review",
    "RUN_PIPELINE": "test_report",
    "DEPLOY_SERVICE": "deployment",
    "DEPLOY_ARTIFACT": "deployment",
    "GENERATE_DOCS": "document",
    "UPDATE_README": "document",
    "GENERATE_CODE": "branch",
    "REFACTOR_CODE": "branch",
    "VALIDATE_BUILD": "build",
    "DECOMPOSE_TASK": "plan",
}


def bounded_content(result: Any) -> Any:
    """The result itself when its JSON is at most MAX_CONTENT_BYTES; otherwise a summary: its scalar
    fields (texts cut to SUMMARY_TEXT_CHARS) and, for lists and objects, what was left out."""
    size = len(json.dumps(result, separators=(",", ":"), default=str).encode())
    if size <= MAX_CONTENT_BYTES:
        return result
    if not isinstance(result, Mapping):
        return {"truncated": True, "bytes": size, "type": type(result).__name__}
    summary: dict[str, Any] = {"truncated": True, "bytes": size}
    for name, value in list(result.items())[:SUMMARY_MAX_KEYS]:
        if isinstance(value, str) and len(value) > SUMMARY_TEXT_CHARS:
            summary[name] = value[:SUMMARY_TEXT_CHARS] + f"…({len(value)} chars)"
        elif isinstance(value, list):
            summary[name] = {"omitted": f"list of {len(value)} items"}
        elif isinstance(value, Mapping):
            summary[name] = {"omitted": f"object of {len(value)} keys"}
        else:
            summary[name] = value
    return summary


def artifacts_of(task: Task) -> list[tuple[str, str | None, Any]]:
    """(kind, reference, content) of each artifact a task produced: none unless it succeeded with a
    result object, and none for request types that produce nothing lasting (HEALTH_CHECK, ...)."""
    producer = PRODUCERS.get(task.request_type)
    if task.status is not TaskStatus.SUCCEEDED or producer is None or not isinstance(task.result, Mapping):
        return []
    content = bounded_content(task.result)
    return [
        (kind, reference[:MAX_REFERENCE_CHARS] if reference else None, content)
        for kind, reference in producer(task.result)
    ]


def artifacts_from_tasks(tasks: Iterable[Task], phase: str) -> list[GateArtifact]:
    """The artifacts of these tasks as unsaved GateArtifacts (what GateStore.record_artifacts stores)."""
    return [
        GateArtifact(
            kind=kind,  # type: ignore[arg-type]  # the producers only name ArtifactKinds
            phase=phase,
            task_id=task.id,
            task_key=task.key,
            attempt=task.attempt,
            agent=task.assigned_agent,
            content=content,
            reference=reference,
        )
        for task in tasks
        for kind, reference, content in artifacts_of(task)
    ]
