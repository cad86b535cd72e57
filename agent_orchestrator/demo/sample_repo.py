"""A small sample web app as a real git repository, for `devtools demo` and the workflow tests.

`main` holds a stdlib HTTP app (`app.py`, `/health` and `/`), a package (`greeter`) with
docstrings for the API reference, tests, a README and `[tool.devtools]` (test and run
commands, port, health path). Branches on top of it:

- `feature/farewell` (`create_sample_repo`): a clean change with its test: reviewed `approve`.
- `add_secret_branch`: commits an AWS key: reviewed `request_changes`.
- `add_failing_test_branch`: a clean-looking change whose test fails.

The app exits at start when the file named by `APP_FAIL_IF_EXISTS` exists (how tests make a
release that can never be restarted), and its `/health` answers 503 while the file named by
`APP_READY_IF_EXISTS` does not exist yet (how tests hold a deploy in progress for as long as they
need).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

from shared.git import run_git

APP = '''\
"""Greeting service: GET / greets, GET /health answers ok."""

import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

from greeter import greet


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"ok" if self.path == "/health" else greet(os.environ.get("GREETING_NAME", "world")).encode()
        gate = os.environ.get("APP_READY_IF_EXISTS")
        if self.path == "/health" and gate and not os.path.exists(gate):
            body = b"starting"
            self.send_response(503)
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the sample app's requests are not the demo's output."""


def main() -> None:
    marker = os.environ.get("APP_FAIL_IF_EXISTS")
    if marker and os.path.exists(marker):
        print(f"ERROR: refusing to start: {marker} exists", flush=True)
        sys.exit(1)
    HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()


if __name__ == "__main__":
    main()
'''

GREETER = '''\
"""Greetings for people."""


def greet(name: str, *, punctuation: str = "!") -> str:
    """Say hello to `name`."""
    return f"Hello, {name}{punctuation}"
'''

FAREWELL = '''

def farewell(name: str) -> str:
    """Say goodbye to `name`."""
    return f"Goodbye, {name}."
'''

TESTS = """\
from greeter import greet


def test_greet() -> None:
    assert greet("Ada") == "Hello, Ada!"
"""

FAREWELL_TEST = """\
from greeter import farewell


def test_farewell() -> None:
    assert farewell("Ada") == "Goodbye, Ada."
"""


def pyproject(port: int) -> str:
    return textwrap.dedent(
        f"""\
        [project]
        name = "greeting-service"
        version = "0.1.0"
        description = "A tiny greeting web service"
        requires-python = ">=3.10"

        [tool.devtools]
        test_command = "python -m pytest -q tests"
        run_command = "python app.py"
        port = {port}
        health_path = "/health"
        health_timeout_seconds = 15
        """
    )


README = """\
# greeting-service

A tiny web service that greets people.

Run it with `PORT=8080 python app.py`, then `curl localhost:8080/`.
"""


@dataclass(frozen=True)
class SampleRepo:
    path: Path
    port: int
    base: str = "main"
    feature: str = "feature/farewell"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _git(repo: Path, *args: str) -> str:
    return run_git(repo, *args)


def _write(repo: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        target = repo / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


def _commit(repo: Path, message: str, files: dict[str, str]) -> str:
    _write(repo, files)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message)
    return _git(repo, "rev-parse", "HEAD").strip()


def create_sample_repo(path: Path, port: int) -> SampleRepo:
    """A fresh repository at `path` (which must not exist or be empty) with `main` and the feature branch."""
    path.mkdir(parents=True, exist_ok=True)
    if any(path.iterdir()):
        raise FileExistsError(f"sample repository folder is not empty: {path}")
    _git(path, "init", "-q", "-b", "main")
    for key, value in (("user.name", "Sample Author"), ("user.email", "sample@example.com")):
        _git(path, "config", key, value)
    _git(path, "config", "commit.gpgsign", "false")
    _commit(
        path,
        "greeting service",
        {
            "app.py": APP,
            "greeter/__init__.py": GREETER,
            "tests/test_greeter.py": TESTS,
            "pyproject.toml": pyproject(port),
            "README.md": README,
            ".gitignore": "__pycache__/\n",
        },
    )
    repo = SampleRepo(path, port)
    _git(path, "checkout", "-q", "-b", repo.feature)
    _commit(
        path,
        "add farewell",
        {"greeter/__init__.py": GREETER + FAREWELL, "tests/test_farewell.py": FAREWELL_TEST},
    )
    _git(path, "checkout", "-q", "main")
    return repo


def add_secret_branch(repo: SampleRepo, branch: str = "feature/leaky-config") -> str:
    """A branch that commits a hard-coded AWS access key (the code reviewer blocks it)."""
    _git(repo.path, "checkout", "-q", "-b", branch, repo.base)
    settings = 'AWS_ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLA"\n'
    test = (
        "from greeter.settings import AWS_ACCESS_KEY_ID\n\n\n"
        "def test_key() -> None:\n    assert AWS_ACCESS_KEY_ID\n"
    )
    _commit(repo.path, "add settings", {"greeter/settings.py": settings, "tests/test_settings.py": test})
    _git(repo.path, "checkout", "-q", repo.base)
    return branch


def add_failing_test_branch(repo: SampleRepo, branch: str = "feature/shout") -> str:
    """A clean change whose own test fails (the pipeline stops it)."""
    _git(repo.path, "checkout", "-q", "-b", branch, repo.base)
    code = (
        GREETER
        + '\n\ndef shout(name: str) -> str:\n    """Greet loudly."""\n    return greet(name).lower()\n'
    )
    test = (
        'from greeter import shout\n\n\ndef test_shout() -> None:\n    assert shout("ada") == "HELLO, ADA!"\n'
    )
    _commit(repo.path, "add shout", {"greeter/__init__.py": code, "tests/test_shout.py": test})
    _git(repo.path, "checkout", "-q", repo.base)
    return branch
