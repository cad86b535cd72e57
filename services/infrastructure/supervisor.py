"""Start and stop an app as a detached process group, and tell whether it is still alive.

The app runs in a session of its own (`start_new_session=True`), so it outlives the agent's
restarts and is stopped as a whole group. A daemon thread reaps it if it exits while we are
its parent, so a crashed app never lingers as a zombie that would look alive.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import psutil

from services.cicd.process import kill_process_group, process_group_alive
from services.infrastructure.env_state import RunningProcess

STOP_GRACE_SECONDS = 5.0


class PortInUseError(RuntimeError):
    """Something else listens on the app's port: starting would health-check the wrong process."""


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def start_app(
    command: str, *, cwd: Path, port: int, env: Mapping[str, str], log_path: Path, release_id: str
) -> RunningProcess:
    if not port_is_free(port):
        raise PortInUseError(f"port {port} is already in use by another process")
    with log_path.open("ab") as log:
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        log.write(f"[devtools] {stamp} starting: {command} (PORT={port})\n".encode())
        log.flush()
        process = subprocess.Popen(
            ["/bin/sh", "-c", command],
            cwd=cwd,
            env={**env, "PORT": str(port)},
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
