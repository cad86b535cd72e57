"""GENERATE_CODE and REFACTOR_CODE: a worktree on a new branch, an OpenHands conversation, a commit.

With no LLM configured the request is rejected: there is no deterministic way to write a feature,
and a fake change would be worse than none.
"""

from __future__ import annotations

import logging
import re
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import Counter, Histogram

from services.feature_dev.conversation import run_conversation
from services.feature_dev.models import (
    ChangeKind,
    ChangePayload,
    ChangeResult,
    FeatureDevError,
    FeatureDevRejected,
    FileChange,
    GenerateCodePayload,
    RefactorCodePayload,
)
from shared.git import (
    GitError,
    changed_files,
    commit_all,
    ensure_repository,
    resolve_ref,
    run_git,
    worktree,
)

if TYPE_CHECKING:
    from openhands.sdk import LLM

log = logging.getLogger(__name__)

NO_LLM_MESSAGE = "no LLM configured: set DEVTOOLS_LLM=provider:model to let feature-dev write code"
COMMIT_AUTHOR = "devtools feature-dev <feature-dev@devtools.invalid>"
_COMMIT_PREFIX: dict[ChangeKind, str] = {"generate": "feat", "refactor": "refactor"}

CHANGES = Counter(
    "devtools_feature_dev_changes_total",
    "Feature-dev requests by kind and outcome (committed, no_change, failed, rejected)",
    ["kind", "outcome"],
)
DURATION = Histogram(
    "devtools_feature_dev_duration_seconds",
    "Wall time of one feature-dev change, worktree to commit",
    ["kind"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800),
)


def generate_code(
    payload: GenerateCodePayload, *, llm: LLM | None, work_root: Path | None = None
) -> ChangeResult:
    return make_change("generate", payload, llm=llm, work_root=work_root)


def refactor_code(
    payload: RefactorCodePayload, *, llm: LLM | None, work_root: Path | None = None
) -> ChangeResult:
    return make_change("refactor", payload, llm=llm, work_root=work_root)


def default_branch_name(kind: ChangeKind, instruction: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", instruction.lower()).strip("-")[:40].rstrip("-") or "change"
    return f"devtools/{kind}-{slug}-{uuid.uuid4().hex[:6]}"


def make_change(
    kind: ChangeKind, payload: ChangePayload, *, llm: LLM | None, work_root: Path | None = None
) -> ChangeResult:
    if llm is None:
        CHANGES.labels(kind, "rejected").inc()
        raise FeatureDevRejected(NO_LLM_MESSAGE)
    started = time.monotonic()
    try:
        result = _make_change(kind, payload, llm, work_root)
    except FeatureDevError:
        CHANGES.labels(kind, "failed").inc()
        raise
    CHANGES.labels(kind, result.outcome).inc()
    DURATION.labels(kind).observe(time.monotonic() - started)
    return result


def _make_change(kind: ChangeKind, payload: ChangePayload, llm: LLM, work_root: Path | None) -> ChangeResult:
    try:
        repo = ensure_repository(payload.repo)
        base_commit = resolve_ref(repo, payload.base_ref)
    except GitError as exc:
        raise FeatureDevError(str(exc)) from None
    branch = payload.branch or default_branch_name(kind, payload.instruction)
    _check_new_branch(repo, branch)
    log.info("feature-dev change started", extra={"kind": kind, "repo": str(repo), "branch": branch})
    try:
        with ExitStack() as stack:
            root = work_root or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="feature-dev-")))
            path = stack.enter_context(worktree(repo, base_commit, root, branch=branch))
            outcome = run_conversation(
                llm, path, kind, payload.instruction, payload.files, payload.max_iterations
            )
            commit_all(
                path, _commit_message(kind, payload.instruction, outcome.final_message), author=COMMIT_AUTHOR
            )
            _check_still_on(path, branch)
            head = resolve_ref(path, "HEAD")
    except BaseException:
        _delete_branch(repo, branch)  # ours, created above: leave nothing half-done behind
        raise
    result = ChangeResult(
        kind=kind,
        outcome="committed",
        repo=str(repo),
        base_ref=payload.base_ref,
        base_commit=base_commit,
        branch=branch,
        commit=head,
        final_message=outcome.final_message,
        model=llm.model,
        actions=outcome.actions,
    )
    if head == base_commit:
        _delete_branch(repo, branch)
        log.info("feature-dev change made no change", extra={"kind": kind, "repo": str(repo)})
        return result.model_copy(update={"outcome": "no_change", "branch": None, "commit": None})
    files = [
        FileChange(path=f.path, status=f.status, insertions=f.added, deletions=f.deleted, binary=f.binary)
        for f in changed_files(repo, base_commit, head)
    ]
    log.info("feature-dev change committed", extra={"kind": kind, "branch": branch, "commit": head})
    return result.model_copy(
        update={
            "files": files,
            "files_changed": len(files),
            "insertions": sum(f.insertions for f in files),
            "deletions": sum(f.deletions for f in files),
        }
    )


def _check_new_branch(repo: Path, branch: str) -> None:
    try:
        run_git(repo, "check-ref-format", "--branch", branch)
    except GitError:
        raise FeatureDevError(f"branch: {branch!r} is not a valid branch name") from None
    try:
        run_git(repo, "show-ref", "--verify", "--quiet", f"refs/heads/{branch}")
    except GitError:
        return  # does not exist yet: good
    raise FeatureDevError(f"branch: {branch!r} already exists in {repo}; choose another name")


def _check_still_on(path: Path, branch: str) -> None:
    try:
        current = run_git(path, "symbolic-ref", "--quiet", "--short", "HEAD").strip()
    except GitError:
        current = "(detached HEAD)"
    if current != branch:
        raise FeatureDevError(f"the agent left branch {branch!r} (now on {current}); nothing was kept")


def _delete_branch(repo: Path, branch: str) -> None:
    try:
        run_git(repo, "branch", "-D", branch)
    except GitError as exc:  # already gone (or never created): nothing to clean
        log.debug("branch cleanup skipped", extra={"branch": branch, "error": str(exc)})


def _commit_message(kind: ChangeKind, instruction: str, final_message: str) -> str:
    first_line = instruction.splitlines()[0].strip()
    subject = f"{_COMMIT_PREFIX[kind]}: {first_line[:66]}{'...' if len(first_line) > 66 else ''}"
    body = [instruction] if instruction != first_line or len(first_line) > 66 else []
    if final_message:
        body.append(f"Agent summary: {final_message}")
    body.append("Made by the devtools feature-dev agent.")
    return subject + "\n\n" + "\n\n".join(body)
