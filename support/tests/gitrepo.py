"""Build real git repositories for tests: init, files, commits, branches."""

from __future__ import annotations

from pathlib import Path

from shared.git import run_git


class GitRepo:
    def __init__(self, path: Path, *, default_branch: str = "main") -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        run_git(path, "init", "-q", "-b", default_branch)
        run_git(path, "config", "user.name", "Test Author")
        run_git(path, "config", "user.email", "test@example.com")
        run_git(path, "config", "commit.gpgsign", "false")

    def write(self, relative: str, text: str | bytes) -> Path:
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            target.write_bytes(text)
        else:
            target.write_text(text)
        return target

    def commit(self, message: str, files: dict[str, str | bytes] | None = None) -> str:
        for relative, text in (files or {}).items():
            self.write(relative, text)
        run_git(self.path, "add", "-A")
        run_git(self.path, "commit", "-q", "--allow-empty", "-m", message)
        return self.head()

    def branch(self, name: str, start: str = "HEAD") -> None:
        run_git(self.path, "checkout", "-q", "-b", name, start)

    def checkout(self, ref: str) -> None:
        run_git(self.path, "checkout", "-q", ref)

    def head(self) -> str:
        return run_git(self.path, "rev-parse", "HEAD").strip()
