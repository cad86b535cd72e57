"""Checks of workflow inputs that need the local host: a repository path, its refs, and where a
workflow may write.

The agents that act on a repository (code review, CI, infrastructure, documentation) run on
the orchestrator's host and read the path as given, so a path that is not a git repository
there, or a branch that does not exist in it, can only fail the run later. Refusing it at
`POST /runs` turns that into a 422 naming the field (`input.repo`, `input.head`).

The messages are what pydantic reports (these functions raise ValueError from validators).
"""

from __future__ import annotations

from pathlib import Path

from shared.git import GitError, ensure_repository, resolve_ref


def git_repository(path: str) -> str:
    """`path` unchanged when it is a git repository's folder; ValueError saying what is wrong."""
    folder = Path(path).expanduser()
    if not folder.exists():
        raise ValueError(f"no such folder: {path}")
    if not folder.is_dir():
        raise ValueError(f"not a folder: {path}")
    try:
        ensure_repository(folder)
    except GitError:
        raise ValueError(f"not a git repository: {path}") from None
    return path


def git_ref(repo: str | None, ref: str) -> str:
    """`ref` unchanged when it names a commit in `repo` (no check when `repo` was refused)."""
    if repo is None:
        return ref
    try:
        resolve_ref(Path(repo).expanduser(), ref)
    except GitError:
        raise ValueError(f"no branch, tag or commit {ref!r} in {repo}") from None
    return ref


def output_folder(repo: str, output_dir: str, root: Path) -> Path:
    """Where `output_dir` points (relative: inside `repo`), once resolved (symlinks followed); ValueError
    unless that is inside the repository or inside `root` (DEVTOOLS_OUTPUT_ROOT, by default the data
    folder): the server writes as its own user, so a request must not choose any path on the host."""
    out = Path(output_dir).expanduser()
    folder = (out if out.is_absolute() else Path(repo).expanduser() / out).resolve()
    allowed = [Path(repo).expanduser().resolve(), root.resolve()]
    if not any(folder.is_relative_to(place) for place in allowed):
        raise ValueError(
            f"{output_dir} is outside the repository and the output root {allowed[1]}: give a folder "
            "inside one of them (a relative one is inside the repository; DEVTOOLS_OUTPUT_ROOT sets the root)"
        )
    return folder
