"""An environment's folder and its state file, guarded by a file lock.

```
<data_dir>/environments/<env>/
    state.json          current release, deploy history, running process, highest fencing token
    .lock               flock: one operation on the environment at a time (across processes too)
    config.env          KEY=value for the app (config.env.previous: the one before)
    current -> releases/<id>
    releases/<id>/      the release's files, .release.json (how to run it), app.log
```
"""

from __future__ import annotations

import fcntl
import os
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from services.infrastructure.contract import RELEASE_PATTERN
from services.infrastructure.errors import EnvironmentBusyError, ReleaseNotFoundError, StaleFencingTokenError

_RELEASE = re.compile(RELEASE_PATTERN)
LOCK_WAIT_SECONDS = 300.0


class RunningProcess(BaseModel):
    pid: int  # also the process group id: the app runs in a session of its own
    create_time: float
    port: int
    release_id: str
    started_at: str


class EnvironmentState(BaseModel):
    current_release: str | None = None
    history: list[str] = []  # releases that passed their health check, oldest first
    process: RunningProcess | None = None
    stopped_by_request: bool = False
    highest_fencing_token: int | None = None
    # The results of the latest deploys that carried an idempotency_key, by key, oldest first.
    deploys: dict[str, dict[str, Any]] = {}


class ReleaseInfo(BaseModel):
    release_id: str
    source: dict[str, str]  # {"repo","ref","commit"} or {"artifact_sha256","file_name"}
    run_command: str
    port: int
    health_path: str
    health_timeout_seconds: float
    max_restarts: int = 0  # > 0: run under the restart-on-crash supervisor (keeper.py)
    created: str
    outcome: str = "pending"  # pending | healthy | failed_health_check


class EnvironmentDir:
    def __init__(self, data_dir: Path, name: str) -> None:
        self.name = name
        self.root = data_dir / "environments" / name
        self.releases = self.root / "releases"
        self.state_file = self.root / "state.json"
        self.config_file = self.root / "config.env"
        self.current_link = self.root / "current"

    def exists(self) -> bool:
        return self.state_file.is_file()

    @contextmanager
    def locked(self, wait_seconds: float = LOCK_WAIT_SECONDS) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a") as handle:
            deadline = time.monotonic() + wait_seconds
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise EnvironmentBusyError(
                            f"environment {self.name!r} is busy: another operation held it for "
                            f"{wait_seconds:g}s"
                        ) from None
                    time.sleep(0.05)  # flock has no timed wait; a short poll against a deadline
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def load(self) -> EnvironmentState:
        if not self.state_file.is_file():
            return EnvironmentState()
        return EnvironmentState.model_validate_json(self.state_file.read_text())

    def save(self, state: EnvironmentState) -> None:
        partial = self.state_file.with_name(f".state.{uuid.uuid4().hex[:8]}.partial")
        partial.write_text(state.model_dump_json(indent=2))
        os.replace(partial, self.state_file)

    def check_fencing(self, state: EnvironmentState, token: int | None) -> None:
        """Refuse a token lower than the highest seen; remember a higher one. Call under `locked()`."""
        if token is None:
            return
        highest = state.highest_fencing_token
        if highest is not None and token < highest:
            raise StaleFencingTokenError(
                f"fencing_token {token} is stale: environment {self.name!r} has already seen token {highest}"
            )
        state.highest_fencing_token = token

    def release_dir(self, release_id: str) -> Path:
        if not _RELEASE.match(release_id):
            raise ReleaseNotFoundError(f"release_id {release_id!r} is not a valid release name")
        return self.releases / release_id

    def release_info(self, release_id: str) -> ReleaseInfo:
        path = self.release_dir(release_id) / ".release.json"
        if not path.is_file():
            raise ReleaseNotFoundError(f"no release {release_id!r} in environment {self.name!r}")
        return ReleaseInfo.model_validate_json(path.read_text())

    def save_release_info(self, info: ReleaseInfo) -> None:
        path = self.release_dir(info.release_id) / ".release.json"
        partial = path.with_name(".release.json.partial")
        partial.write_text(info.model_dump_json(indent=2))
        os.replace(partial, path)

    def point_current_at(self, release_id: str | None) -> None:
        """Switch `current` atomically: a symlink under a temporary name renamed over the old one."""
        if release_id is None:
            self.current_link.unlink(missing_ok=True)
            return
        temporary = self.root / f".current.{uuid.uuid4().hex[:8]}"
        temporary.symlink_to(Path("releases") / release_id)
        os.replace(temporary, self.current_link)
