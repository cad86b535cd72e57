"""UPDATE_README: regenerate one marked section of a README, in place or as a commit on a new branch."""

from __future__ import annotations

import tempfile
from pathlib import Path, PurePosixPath

from langchain_core.language_models import BaseChatModel

from services.documentation.generate import add_prose, build_document
from services.documentation.markers import demote_headings, replace_section
from services.documentation.models import DocsError, UpdateReadmePayload, UpdateReadmeResult
from services.documentation.sources import open_repository
from shared.git import GitError, commit_all, resolve_ref, run_git, worktree


def update_readme(
    payload: UpdateReadmePayload, *, chat_model: BaseChatModel | None = None
) -> UpdateReadmeResult:
    repo = open_repository(payload.repo)
    relative = PurePosixPath(payload.readme)
    if relative.is_absolute() or ".." in relative.parts:
        raise DocsError(f"readme: must be relative to the repository and stay inside it: {payload.readme}")
    if payload.mode == "in_place":
        changed, text, warning = _rewrite(repo, repo, payload, chat_model)
        return UpdateReadmeResult(
            repo=str(repo), readme=payload.readme, section=payload.section, mode="in_place",
            changed=changed, section_text=text, llm_warning=warning,
        )  # fmt: skip
    return _on_branch(repo, payload, chat_model)


def _rewrite(
    repo: Path, tree: Path, payload: UpdateReadmePayload, chat_model: BaseChatModel | None
) -> tuple[bool, str, str | None]:
    """Regenerate the section in `tree`'s README: (whether the file changed, the section's new text,
    why it has no LLM introduction though a model is set)."""
    target = tree / payload.readme
    if not target.is_file():
        raise DocsError(f"readme: {payload.readme} does not exist in {tree}")
    original = target.read_bytes()
    assert payload.doc_type is not None  # filled in by the payload model
    document = build_document(tree, repo, payload.doc_type)
    prose = add_prose(document, payload.doc_type, chat_model)
    text = demote_headings(document.markdown)
    updated = replace_section(original, payload.section, text)
    if updated != original:
        target.write_bytes(updated)
    return updated != original, text, prose.warning


def _on_branch(
    repo: Path, payload: UpdateReadmePayload, chat_model: BaseChatModel | None
) -> UpdateReadmeResult:
    branch = payload.branch or f"devtools/docs-{payload.section}"
    try:
        run_git(repo, "check-ref-format", "--branch", branch)
    except GitError:
        raise DocsError(f"branch: not a valid branch name: {branch!r}") from None
    if _branch_exists(repo, branch):
        raise DocsError(f"branch: {branch!r} already exists")
    try:
        base = resolve_ref(repo, payload.base)
    except GitError:
        raise DocsError(f"base: unknown ref {payload.base!r} in {repo}") from None
    commit: str | None = None
    with tempfile.TemporaryDirectory(prefix="devtools-readme-") as scratch:
        with worktree(repo, base, Path(scratch), branch=branch) as tree:
            changed, text, warning = _rewrite(repo, tree, payload, chat_model)
            if changed:
                commit = commit_all(tree, payload.commit_message)
        if commit is None:  # nothing to propose: do not leave an empty branch behind
            run_git(repo, "branch", "-D", branch)
    return UpdateReadmeResult(
        repo=str(repo),
        readme=payload.readme,
        section=payload.section,
        mode="branch",
        changed=commit is not None,
        branch=branch if commit else None,
        commit=commit,
        section_text=text,
        llm_warning=warning,
    )


def _branch_exists(repo: Path, branch: str) -> bool:
    try:
        run_git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}")
    except GitError:
        return False
    return True
