"""A variant of the sample app whose health check goes bad after a number of answers.

`HEALTHY_CHECKS=n` (from the environment's config.env, or the default baked into the commit)
makes `/health` answer 200 n times and 503 from then on. The infrastructure agent probes a new
process until its first 200 and once more for the report it returns, so with n = 1 a release
passes its deploy (or restart) health check and is unhealthy at the next check: a real app that
goes bad between deploy and verify, without any timing.

The commit also changes the greeting ("Hello, world?") so a test can tell which release serves,
and adds a test file, so the code reviewer approves it and the pipeline passes.
"""

from __future__ import annotations

from agent_orchestrator.demo.sample_repo import SampleRepo
from shared.git import run_git

APP = '''\
"""Greeting service: GET / greets, GET /health answers ok (only HEALTHY_CHECKS times, when set)."""

import os
from http.server import BaseHTTPRequestHandler, HTTPServer

from greeter import greet

HEALTHY_CHECKS = os.environ.get("HEALTHY_CHECKS", "{default}")
answered = {{"health": 0}}


def health_status() -> int:
    answered["health"] += 1
    if HEALTHY_CHECKS and answered["health"] > int(HEALTHY_CHECKS):
        return 503
    return 200


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/health":
            status, body = health_status(), b"ok"
        else:
            status, body = 200, greet(os.environ.get("GREETING_NAME", "world"), punctuation="?").encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()


if __name__ == "__main__":
    main()
'''

TEST = """\
from greeter import greet


def test_question() -> None:
    assert greet("Ada", punctuation="?") == "Hello, Ada?"
"""

GREETING = "Hello, world?"


def commit_flaky_app(repo: SampleRepo, branch: str, *, healthy_checks: str = "", base: str = "main") -> str:
    """Commit the variant on `branch` (created from `base`, or `base` itself); returns the branch.

    `healthy_checks` is the default when config.env does not set HEALTHY_CHECKS ("" = always healthy).
    """
    if branch != base:
        run_git(repo.path, "checkout", "-q", "-b", branch, base)
    else:
        run_git(repo.path, "checkout", "-q", base)
    (repo.path / "app.py").write_text(APP.format(default=healthy_checks))
    (repo.path / "tests" / "test_question.py").write_text(TEST)
    run_git(repo.path, "add", "-A")
    run_git(repo.path, "commit", "-q", "-m", "greet with a question")
    run_git(repo.path, "checkout", "-q", repo.base)
    return branch
