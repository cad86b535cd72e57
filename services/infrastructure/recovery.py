"""What an operation that died on an environment (the infrastructure agent killed mid-deploy) left
behind, put right by the next operation on it, under the environment's lock (so no live operation
is making any of it):

- stray apps: a process started as one of the environment's apps that state.json does not
  record as the app (a dead attempt started it and died before recording its pid, or
  recorded it and the release was then given up). Apps run in sessions of their own so that they
  outlive the agent; a stray would keep its port and serve a release nobody judged. It is stopped,
  its whole process group.
- dead folders: a `.staging-*` folder, or a release that never went live and was never judged
  (outcome `pending`). Removed.
- an unjudged current release: a dead deploy made it current (and started it) but never recorded
  its verdict. The retry of that same deploy judges it (LocalTarget._recover); anything else gives
  it up (`give_up_current`).
"""

from __future__ import annotations

import logging
import os
import shutil

from services.infrastructure.env_state import EnvironmentDir, EnvironmentState, ReleaseInfo
from services.infrastructure.errors import ReleaseNotFoundError
from services.infrastructure.supervisor import app_groups, is_alive
from shared.process import kill_process_group

log = logging.getLogger(__name__)

STRAY_STOP_GRACE_SECONDS = 5.0


def stray_groups(env: EnvironmentDir, state: EnvironmentState) -> set[int]:
    """Process groups of the environment's apps (found by the marker every app carries) other than
    the one state.json records."""
    recorded = state.process.pid if state.process is not None and is_alive(state.process) else None
    return {group for group in app_groups(env.root) if group not in (recorded, os.getpgrp())}


def stop_strays(env: EnvironmentDir, state: EnvironmentState) -> int:
    """Stop every stray app of the environment; how many process groups were stopped."""
    groups = stray_groups(env, state)
    for group in groups:
        log.warning(
            "stopping an app a dead operation left running", extra={"environment": env.name, "pgid": group}
        )
        kill_process_group(group, STRAY_STOP_GRACE_SECONDS)
    return len(groups)


def remove_dead_folders(env: EnvironmentDir, state: EnvironmentState) -> None:
    """Staging folders, and releases that never went live and were never judged."""
    if not env.releases.is_dir():
        return
    for folder in env.releases.iterdir():
        if folder.name.startswith(".staging-"):
            shutil.rmtree(folder, ignore_errors=True)
            continue
        if folder.name == state.current_release or folder.name in state.history:
            continue
        try:
            outcome = env.release_info(folder.name).outcome
        except (ReleaseNotFoundError, ValueError):
            outcome = "pending"  # no (readable) description: it was never finished
        if outcome == "pending":
            log.warning("removing a release a dead attempt left", extra={"release": folder.name})
            shutil.rmtree(folder, ignore_errors=True)


def unjudged_current(env: EnvironmentDir, state: EnvironmentState) -> ReleaseInfo | None:
    """The current release when a dead deploy made it current without recording its verdict.

    Every deploy that ends with its release current has put it in the history; a rollback makes
    current a release that was judged before. So current, not in the history and not judged
    unhealthy means the deploy died between starting it and recording the outcome."""
    if state.current_release is None or state.current_release in state.history:
        return None
    try:
        info = env.release_info(state.current_release)
    except (ReleaseNotFoundError, ValueError):
        return None
    return info if info.outcome in ("pending", "healthy") else None


def give_up_current(env: EnvironmentDir, state: EnvironmentState, info: ReleaseInfo) -> None:
    """Remove an unjudged current release (its app already stopped); the last healthy one is current
    again (not started: the deploy that follows replaces it, or restores it if it fails)."""
    previous = state.history[-1] if state.history else None
    env.point_current_at(previous)
    state.current_release = previous
    env.save(state)
    log.warning("giving up a release a dead deploy left unjudged", extra={"release": info.release_id})
    shutil.rmtree(env.release_dir(info.release_id), ignore_errors=True)
