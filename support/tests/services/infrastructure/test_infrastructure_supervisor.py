"""Restart-on-crash (opt-in with max_restarts): a real app killed under its supervisor serves again,
the restarts show in the health report, and after max_restarts the app stays down."""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path

import psutil
import pytest

from services.infrastructure.contract import HealthReport
from services.infrastructure.env_state import EnvironmentDir
from services.infrastructure.models import HealthCheckPayload, StopServicePayload
from services.infrastructure.skills import health_check, stop_service
from services.infrastructure.supervisor import supervisor_status
from shared.ports import port_is_free
from support.tests.agents.processes import wait_until
from support.tests.gitrepo import GitRepo
from support.tests.services.infrastructure import test_infrastructure_deploy as apps
from support.tests.services.infrastructure.test_infrastructure_deploy import deploy, get

pytestmark = pytest.mark.integration

# The deploy tests' fixtures: a data dir whose apps are killed afterwards, a tiny app on a free port.
data_dir, port, app_repo = apps.data_dir, apps.port, apps.app_repo


def _health(data_dir: Path) -> HealthReport:
    return health_check(HealthCheckPayload(environment="staging"), data_dir=data_dir)


def _crash_the_app(data_dir: Path) -> None:
    """Kill the app (its shell and what it started) but not the supervisor above it: a crash."""
    state = EnvironmentDir(data_dir, "staging").load()
    assert state.process is not None
    status = supervisor_status(EnvironmentDir(data_dir, "staging").release_dir(state.process.release_id))
    assert status is not None and status.app_pid is not None
    app = psutil.Process(status.app_pid)
    for process in [app, *app.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):  # the shell may end as soon as its child does
            process.send_signal(signal.SIGKILL)


def _serving_after_restarts(data_dir: Path, port: int, restarts: int) -> bool:
    report = _health(data_dir)
    if report.restarts != restarts or report.status != "up":
        return False
    return get(port).text.startswith("v1")


def test_a_crashed_app_is_restarted_until_max_restarts(data_dir: Path, app_repo: GitRepo, port: int) -> None:
    assert deploy(data_dir, app_repo, max_restarts=2).status == "deployed"  # type: ignore[attr-defined]
    supervisor_pid = _health(data_dir).pid

    _crash_the_app(data_dir)
    wait_until(lambda: _serving_after_restarts(data_dir, port, 1), deadline_s=30, what="first restart")
    _crash_the_app(data_dir)
    wait_until(lambda: _serving_after_restarts(data_dir, port, 2), deadline_s=30, what="second restart")
    assert _health(data_dir).pid == supervisor_pid  # the same supervisor, a new app under it

    _crash_the_app(data_dir)  # the third crash: no restarts left
    report = wait_until(
        lambda: (r := _health(data_dir)).status == "down" and r, deadline_s=30, what="give up"
    )
    assert report.reason == "the app's process is gone (its supervisor restarted it 2 time(s), then gave up)"
    assert report.restarts == 2
    app_log = EnvironmentDir(data_dir, "staging").releases / str(report.release_id) / "app.log"
    assert "giving up after 2 restart(s)" in app_log.read_text()


def test_a_requested_stop_is_not_a_crash(data_dir: Path, app_repo: GitRepo, port: int) -> None:
    deploy(data_dir, app_repo, max_restarts=3)

    stopped = stop_service(StopServicePayload(environment="staging"), data_dir=data_dir)

    assert stopped.stopped
    report = _health(data_dir)
    assert (report.status, report.reason, report.process_alive) == ("down", "stopped by request", False)
    assert port_is_free(port)  # supervisor and app went together: nothing is left to restart it


def test_restarts_come_from_the_repository_config_too(data_dir: Path, tmp_path: Path, port: int) -> None:
    repo = GitRepo(tmp_path / "configured")
    project = apps.pyproject(port) + "max_restarts = 1\n"
    repo.commit("v1", {"app.py": apps.APP.format(version="v1", health_status=200), "pyproject.toml": project})
    deploy(data_dir, repo)

    _crash_the_app(data_dir)

    wait_until(lambda: _serving_after_restarts(data_dir, port, 1), deadline_s=30, what="restart")
