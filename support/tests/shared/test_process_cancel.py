"""A command run under a cancel token: cancelling kills its whole process group, children included."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from shared.cancellation import CancelToken, WorkCancelled, cancel_scope
from shared.process import clean_environment, process_group_alive, run_command
from support.tests.agents.processes import wait_until

pytestmark = pytest.mark.unit


def test_cancelling_kills_the_command_and_its_children(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # The shell starts a child that outlives a plain kill of the shell, then waits for it.
    command = f"sleep 300 & echo $$ $! > {pids}; wait"
    token = CancelToken()
    outcome: dict[str, object] = {}

    def run() -> None:
        with cancel_scope(token):
            try:
                run_command(
                    command,
                    cwd=tmp_path,
                    log_path=tmp_path / "log",
                    timeout=600,
                    env=clean_environment(tmp_path),
                )
            except WorkCancelled as exc:
                outcome["cancelled"] = str(exc)

    worker = threading.Thread(target=run)
    worker.start()
    wait_until(lambda: pids.exists() and len(pids.read_text().split()) == 2, what="the command started")
    shell, child = (int(p) for p in pids.read_text().split())
    group = os.getpgid(shell)  # the session's first process is the reaper (shared/reaper.py)

    token.cancel("task timed out")
    worker.join(timeout=30)

    assert not worker.is_alive()
    assert outcome == {"cancelled": "command killed: task timed out"}
    # The child is in the command's process group (its own session): no live member is left.
    assert os.getpgid(child) == group if _exists(child) else True
    assert not process_group_alive(group)
    assert "[devtools] killed: task timed out" in (tmp_path / "log").read_text()


def test_without_a_token_a_command_runs_to_its_end(tmp_path: Path) -> None:
    outcome = run_command(
        "echo done", cwd=tmp_path, log_path=tmp_path / "log", timeout=30, env=clean_environment(tmp_path)
    )
    assert (outcome.exit_code, outcome.timed_out) == (0, False)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # a zombie still exists until reaped; its group is what matters
    except ProcessLookupError:
        return False
    return True
