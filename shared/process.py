"""Run a repository's own command: its own process group, a clean environment, a timeout, a log file.

The command is a user's shell command line, so it may start children (a test runner's
workers, a dev server). On timeout, or when the current cancel token is set (the agent's task was
cancelled or timed out: `shared.cancellation`), the whole process group is killed, never just the shell;
and if the agent itself dies without cleaning up, `shared.reaper` (the group's first process) kills it.
cicd runs test and build commands with it; infrastructure uses the environment, process-group
and log helpers for the apps it deploys.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shared.cancellation import WorkCancelled, current_token

TERMINATE_GRACE_SECONDS = 3.0
# How often a running command checks its cancel token.
CANCEL_POLL_SECONDS = 0.1
# Our own settings and a parent pytest's bookkeeping must not leak into the user's command.
_DROPPED_PREFIXES = ("DEVTOOLS_",)
_DROPPED_NAMES = {"PYTEST_CURRENT_TEST", "PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER", "PYTEST_VERSION"}


@dataclass(frozen=True)
class CommandOutcome:
    exit_code: int | None  # None when the command was killed on timeout
    timed_out: bool
    duration_seconds: float
    log_path: Path


def interpreter_for(root: Path, repo: Path | None = None) -> str:
    """The repository's own virtualenv interpreter if it has one, else the interpreter running us.

    `root` is where the command runs; for a git worktree of `repo` that never holds the untracked
    `.venv`, so the original repository's virtualenv (the developer's environment for it) is next.
    """
    for folder in (root, repo) if repo is not None else (root,):
        for candidate in (folder / ".venv" / "bin" / "python", folder / "venv" / "bin" / "python"):
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    return sys.executable


def clean_environment(
    root: Path, extra: Mapping[str, str] | None = None, *, repo: Path | None = None
) -> dict[str, str]:
    """os.environ without our variables; the repo's (or our) interpreter first on PATH so `python` is it."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(_DROPPED_PREFIXES) and key not in _DROPPED_NAMES
    }
    bin_dir = str(Path(interpreter_for(root, repo)).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")]).rstrip(os.pathsep)
    env.update(extra or {})
    return env


def kill_process_group(pgid: int, grace: float = TERMINATE_GRACE_SECONDS) -> None:
    """SIGTERM the group, then SIGKILL whatever is left after `grace` seconds."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not process_group_alive(pgid):
            return
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return


def process_group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is still in the group; zombies wait only for their reaper."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while we looked
        state, group = fields[0], int(fields[2])
        if group == pgid and state not in ("Z", "X"):
            return True
    return False


def run_command(
    command: str,
    *,
    cwd: Path,
    log_path: Path,
    timeout: float,
    env: Mapping[str, str],
) -> CommandOutcome:
    """Run `command` through /bin/sh in its own session; stdout and stderr go to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log_path.open("wb") as log:
        log.write(f"$ {command}\n".encode())
        log.flush()
        process = subprocess.Popen(
            # The reaper takes the group down if this agent dies without cleaning up (SIGKILL).
            [sys.executable, "-m", "shared.reaper", "/bin/sh", "-c", command],
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        token = current_token()
        deadline = started + timeout
        exit_code: int | None = None
        timed_out = cancelled = False
        while True:
            # Without a token one wait to the deadline; with one, short waits that watch it.
            slice_ = (
                deadline - time.monotonic()
                if token is None
                else min(CANCEL_POLL_SECONDS, deadline - time.monotonic())
            )
            try:
                exit_code = process.wait(timeout=max(slice_, 0))
                break
            except subprocess.TimeoutExpired:
                if token is not None and token.cancelled:
                    cancelled = True
                elif time.monotonic() < deadline:
                    continue
                else:
                    timed_out = True
                kill_process_group(process.pid)
                process.wait()
                break
        # Children left behind by a finished command (a forgotten background server) go too.
        if process_group_alive(process.pid):
            kill_process_group(process.pid)
        if timed_out:
            log.write(f"\n[devtools] killed after {timeout:g}s timeout\n".encode())
        if cancelled:
            log.write(f"\n[devtools] killed: {token.reason if token else 'cancelled'}\n".encode())
    if cancelled:
        raise WorkCancelled(f"command killed: {token.reason if token else 'cancelled'}")
    return CommandOutcome(exit_code, timed_out, time.monotonic() - started, log_path)


def log_tail(path: Path, max_lines: int = 80, max_bytes: int = 16_384) -> str:
    """The last lines of a log, bounded in bytes so a runaway log never bloats an answer."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            data = handle.read()
    except FileNotFoundError:
        return ""
    lines = data.decode("utf-8", errors="replace").splitlines()
    if size > max_bytes and lines:
        lines = lines[1:]  # the first line is likely cut in the middle
    return "\n".join(lines[-max_lines:])
