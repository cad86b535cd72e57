"""Start and stop an app as a detached process group, and tell whether it is still alive.

The app runs in a session of its own (`start_new_session=True`), so it outlives the agent's
restarts and is stopped as a whole group. A daemon thread reaps it if it exits while we are
its parent, so a crashed app never lingers as a zombie that would look alive.

With `max_restarts` > 0 the group's leader is keeper.py, which restarts the app when it crashes
(with backoff, at most max_restarts times) and records that in `supervisor.json` beside the log.
Off by default: a crashed app stays down until someone (self_healing, a person) acts.

Every app carries its environment's folder in its environment (`DEVTOOLS_APP_ENVIRONMENT`), and so do
its children: `app_groups` finds an environment's apps by it, recorded in state.json or not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil

from services.infrastructure.env_state import RunningProcess
from shared.ports import port_is_free
from shared.process import kill_process_group, process_group_alive

STOP_GRACE_SECONDS = 5.0
KEEPER = Path(__file__).with_name("keeper.py")
SUPERVISOR_STATUS = "supervisor.json"
APP_ENVIRONMENT_VARIABLE = "DEVTOOLS_APP_ENVIRONMENT"


class PortInUseError(RuntimeError):
    """Something else listens on the app's port: starting would health-check the wrong process."""


def start_app(
    command: str,
    *,
    cwd: Path,
    port: int,
    env: Mapping[str, str],
    log_path: Path,
    release_id: str,
    environment_dir: Path,
    max_restarts: int = 0,
) -> RunningProcess:
    if not port_is_free(port):
        raise PortInUseError(f"port {port} is already in use by another process")
    argv = ["/bin/sh", "-c", command]
    if max_restarts > 0:
        status = str(cwd / SUPERVISOR_STATUS)
        argv = [sys.executable, "-I", str(KEEPER), "--max-restarts", str(max_restarts), "--status", status]
        argv += ["--", command]
    with log_path.open("ab") as log:
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        supervised = f", restarted on crash up to {max_restarts}x" if max_restarts > 0 else ""
        log.write(f"[devtools] {stamp} starting: {command} (PORT={port}{supervised})\n".encode())
        log.flush()
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env={**env, "PORT": str(port), APP_ENVIRONMENT_VARIABLE: str(environment_dir.resolve())},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    threading.Thread(target=process.wait, name=f"reap-{process.pid}", daemon=True).start()
    try:
        create_time = psutil.Process(process.pid).create_time()
    except psutil.NoSuchProcess:
        create_time = 0.0  # already gone: is_alive() says so from the process group
    return RunningProcess(
        pid=process.pid,
        create_time=create_time,
        port=port,
        release_id=release_id,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def app_groups(environment_dir: Path) -> set[int]:
    """The process groups of every process started as an app of `environment_dir` (or by one)."""
    marker = str(environment_dir.resolve())
    groups: set[int] = set()
    for process in psutil.process_iter():
        try:
            if process.environ().get(APP_ENVIRONMENT_VARIABLE) == marker:
                groups.add(os.getpgid(process.pid))
        except (psutil.Error, ProcessLookupError):
            continue  # gone meanwhile, a zombie, or not ours to read: not an app we started
    return groups


def is_alive(running: RunningProcess) -> bool:
    """Whether the app's process group still has a live member that is really ours."""
    try:
        leader = psutil.Process(running.pid)
        if running.create_time and abs(leader.create_time() - running.create_time) > 1.0:
            return False  # the pid was reused by an unrelated process
    except psutil.NoSuchProcess:
        pass  # the shell may be gone while the app it started lives on in the group
    return process_group_alive(running.pid)


def stop_app(running: RunningProcess, grace: float = STOP_GRACE_SECONDS) -> bool:
    """Stop the app's whole process group; True when something was running."""
    if not is_alive(running):
        return False
    kill_process_group(running.pid, grace)
    return True


@dataclass(frozen=True)
class SupervisorStatus:
    restarts: int  # crashes the supervisor restarted the app after, since it was started
    gave_up: bool  # max_restarts used up: the app stays down
    app_pid: int | None


def supervisor_status(release_dir: Path) -> SupervisorStatus | None:
    """What keeper.py last recorded for the release, if it runs (or ran) under one."""
    try:
        raw = json.loads((release_dir / SUPERVISOR_STATUS).read_text())
        return SupervisorStatus(int(raw["restarts"]), bool(raw["gave_up"]), raw.get("app_pid"))
    except (OSError, ValueError, KeyError, TypeError):
        return None
