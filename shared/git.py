"""Thin wrappers over the git command line, shared by the agents that work on repositories.

Every call runs `git` in a subprocess with a timeout; failures raise `GitError`
with git's own message, so an agent can answer with a clear error.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@")
_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}


class GitError(RuntimeError):
    """A git command failed; the message carries git's stderr."""


@dataclass(frozen=True)
class ChangedFile:
    path: str
    status: str  # A, M, D, R (renamed), ...
    added: int  # lines; 0 for binary files
    deleted: int
    binary: bool


def run_git(repo: Path | str, *args: str, timeout: float = 120, input_text: str | None = None) -> str:
    env = {**os.environ, **_GIT_ENV}
    try:
        result = subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            input=input_text,
        )
    except FileNotFoundError as exc:
        raise GitError("git is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise GitError(f"git {' '.join(args)} timed out after {timeout:.0f}s") from exc
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip().splitlines()
        raise GitError(f"git {' '.join(args[:2])}: {message[-1] if message else 'failed'}")
    return result.stdout


def ensure_repository(repo: Path | str) -> Path:
    """The repository's top-level folder; a clear GitError when `repo` is not a git repository."""
    path = Path(repo)
    if not path.is_dir():
        raise GitError(f"repository folder does not exist: {path}")
    return Path(run_git(path, "rev-parse", "--show-toplevel").strip())


def resolve_ref(repo: Path | str, ref: str) -> str:
    try:
        return run_git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").strip()
    except GitError:
        raise GitError(f"unknown ref {ref!r} in {repo}") from None


def diff_text(repo: Path | str, base: str, head: str, *, context: int = 3) -> str:
    """Unified diff of what `head` adds on top of its merge base with `base` (like a pull request)."""
    resolve_ref(repo, base)
    resolve_ref(repo, head)
    return run_git(repo, "diff", f"--unified={context}", "--no-color", "--no-ext-diff", f"{base}...{head}")


def changed_files(repo: Path | str, base: str, head: str) -> list[ChangedFile]:
    statuses: dict[str, str] = {}
    for line in run_git(repo, "diff", "--name-status", "-M", f"{base}...{head}").splitlines():
        parts = line.split("\t")
        statuses[parts[-1]] = parts[0][0]
    files: list[ChangedFile] = []
    for line in run_git(repo, "diff", "--numstat", "-M", f"{base}...{head}").splitlines():
        added, deleted, path = line.split("\t", 2)
        if " => " in path:  # a rename: numstat shows "old => new" (possibly with braces)
            path = _renamed_target(path)
        binary = added == "-"
        files.append(
            ChangedFile(
                path=path,
                status=statuses.get(path, "M"),
                added=0 if binary else int(added),
                deleted=0 if binary else int(deleted),
                binary=binary,
            )
        )
    return files


def _renamed_target(path: str) -> str:
    if "{" in path:
        prefix, rest = path.split("{", 1)
        inner, suffix = rest.split("}", 1)
        return f"{prefix}{inner.split(' => ')[1]}{suffix}".replace("//", "/")
    return path.split(" => ")[1]


def added_lines(unified_diff: str) -> dict[str, set[int]]:
    """Per file (new path), the line numbers in the new version that the diff adds or changes."""
    result: dict[str, set[int]] = {}
    current: set[int] | None = None
    line_no = 0
    for line in unified_diff.splitlines():
        if line.startswith("+++ "):
            target = line[4:].strip()
            current = None if target == "/dev/null" else result.setdefault(target.removeprefix("b/"), set())
            continue
        if line.startswith("--- ") or line.startswith("diff --git"):
            continue
        match = _HUNK.match(line)
        if match:
            line_no = int(match.group(1))
            continue
        if current is None:
            continue
        if line.startswith("+"):
            current.add(line_no)
            line_no += 1
        elif line.startswith(" "):
            line_no += 1
        # "-" lines do not exist in the new version; "\ No newline" lines carry no number
    return result


def file_at(repo: Path | str, ref: str, path: str) -> str | None:
    """A file's text at a ref, or None where it does not exist there."""
    try:
        return run_git(repo, "show", f"{ref}:{path}")
    except GitError:
        return None


@contextmanager
def worktree(repo: Path | str, ref: str, root: Path, *, branch: str | None = None) -> Iterator[Path]:
    """A throwaway working tree of `ref` under `root` (on a new `branch` if given); removed on exit."""
    commit = resolve_ref(repo, ref)
    # `git -C repo worktree add` reads a relative path against the repository, not our cwd.
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"wt-{uuid.uuid4().hex[:10]}"
    args = ["worktree", "add"]
    args += ["-b", branch, str(path), commit] if branch else ["--detach", str(path), commit]
    with _worktree_lock(repo):
        run_git(repo, *args)
    try:
        yield path
    finally:
        with _worktree_lock(repo):
            try:
                run_git(repo, "worktree", "remove", "--force", str(path))
            except GitError:
                shutil.rmtree(path, ignore_errors=True)
                run_git(repo, "worktree", "prune")


@contextmanager
def _worktree_lock(repo: Path | str) -> Iterator[None]:
    """One worktree add/remove at a time per repository, across processes: git's own bookkeeping in
    .git/worktrees races when several agents (code-review, documentation, cicd) add trees at once."""
    common = Path(run_git(repo, "rev-parse", "--git-common-dir").strip())
    if not common.is_absolute():
        common = Path(repo) / common
    with open(common / "devtools-worktree.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def commit_all(
    worktree_path: Path | str, message: str, *, author: str = "devtools <devtools@localhost>"
) -> str | None:
    """Commit every change in the tree; returns the new commit, or None when there was nothing to commit."""
    run_git(worktree_path, "add", "-A")
    if not run_git(worktree_path, "status", "--porcelain").strip():
        return None
    name, email = author.rsplit(" <", 1)
    run_git(
        worktree_path,
        "-c", f"user.name={name}", "-c", f"user.email={email.rstrip('>')}",
        "commit", "--no-verify", "-q", "-m", message,
    )  # fmt: skip
    return run_git(worktree_path, "rev-parse", "HEAD").strip()
