"""Where the documentation comes from: a repository's tree (working tree or a ref) and its Python files."""

from __future__ import annotations

import tempfile
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from services.documentation.models import DocsError
from shared.git import GitError, ensure_repository, resolve_ref, worktree

# Folders that never hold the project's own importable code.
SKIPPED_DIRS = {
    ".git", ".venv", "venv", "env", "node_modules", "build", "dist", "__pycache__", "site-packages",
    "tests", "test", "docs", "examples", ".tox", ".nox", ".mypy_cache", ".ruff_cache", ".pytest_cache",
}  # fmt: skip


def open_repository(repo: str) -> Path:
    try:
        return ensure_repository(repo)
    except GitError as exc:
        raise DocsError(f"repo: not a git repository: {repo} ({exc})") from None


@contextmanager
def checkout(repo: Path, ref: str | None, *, field: str = "ref") -> Iterator[tuple[Path, str | None]]:
    """The tree to document and its commit: the working tree itself (commit None), or a throwaway worktree."""
    if ref is None:
        yield repo, None
        return
    try:
        commit = resolve_ref(repo, ref)
    except GitError:
        raise DocsError(f"{field}: unknown ref {ref!r} in {repo}") from None
    with (
        tempfile.TemporaryDirectory(prefix="devtools-docs-") as scratch,
        worktree(repo, commit, Path(scratch)) as tree,
    ):
        yield tree, commit


def read_pyproject(tree: Path) -> dict[str, Any]:
    path = tree / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise DocsError(f"pyproject.toml does not parse: {exc}") from None


def python_packages(tree: Path, only: list[str] | None = None) -> list[tuple[str, Path]]:
    """Top-level packages (folders with __init__.py) at the root or under src/, as (name, folder)."""
    found: list[tuple[str, Path]] = []
    for root in (tree, tree / "src"):
        if not root.is_dir():
            continue
        for folder in sorted(root.iterdir()):
            if folder.name in SKIPPED_DIRS or folder.name.startswith("."):
                continue
            if (folder / "__init__.py").is_file() and folder.name.isidentifier():
                found.append((folder.name, folder))
    if only is not None:
        missing = sorted(set(only) - {name for name, _ in found})
        if missing:
            raise DocsError(f"packages: not found in the repository: {', '.join(missing)}")
        found = [(name, folder) for name, folder in found if name in only]
    return found


def package_modules(name: str, folder: Path) -> Iterator[tuple[str, Path]]:
    """(dotted module name, file) for every module of a package, subpackages included, in order."""
    for path in sorted(folder.rglob("*.py")):
        relative = path.relative_to(folder)
        if any(part in SKIPPED_DIRS for part in relative.parts[:-1]):
            continue
        if not all(
            (folder / Path(*relative.parts[:i]) / "__init__.py").is_file() for i in range(len(relative.parts))
        ):
            continue  # a folder without __init__.py is not part of the package
        parts = [name, *relative.with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


def python_files(tree: Path) -> Iterator[Path]:
    """Every Python file of the project (tests, virtualenvs and build output excluded)."""
    for path in sorted(tree.rglob("*.py")):
        relative = path.relative_to(tree)
        if not any(part in SKIPPED_DIRS or part.startswith(".") for part in relative.parts[:-1]):
            yield path


def relative_posix(tree: Path, path: Path) -> str:
    return path.relative_to(tree).as_posix()
