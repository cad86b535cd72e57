"""The `local` deploy target with real apps: generated git repos holding a tiny http.server app."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from services.infrastructure.contract import DeployServicePayload
from services.infrastructure.env_state import EnvironmentDir
from services.infrastructure.errors import (
    DeployConfigError,
    StaleFencingTokenError,
    UnknownEnvironmentError,
    UnknownTargetError,
)
from services.infrastructure.models import (
    HealthCheckPayload,
    RestartServicePayload,
    RollbackPayload,
    StopServicePayload,
    UpdateConfigPayload,
)
from services.infrastructure.skills import (
    deploy_service,
    health_check,
    restart_service,
    rollback,
    stop_service,
    update_config,
)
from shared.process import process_group_alive
from support.tests.agents.processes import wait_until
from support.tests.gitrepo import GitRepo

pytestmark = pytest.mark.integration

APP = textwrap.dedent(
    """
    import os
    from http.server import BaseHTTPRequestHandler, HTTPServer

    VERSION = "{version}"
    HEALTH_STATUS = {health_status}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            status = HEALTH_STATUS if self.path == "/health" else 200
            body = f"{{VERSION}} greeting={{os.environ.get('GREETING', '')}}".encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):
            pass

    if HEALTH_STATUS != 200:
        print("ERROR: health endpoint is broken in", VERSION, flush=True)
    HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
    """
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def pyproject(port: int, *, run_command: str = "python app.py") -> str:
    return textwrap.dedent(
        f"""
        [project]
        name = "tiny-app"
        version = "0.1.0"

        [tool.devtools]
        run_command = "{run_command}"
        port = {port}
        health_path = "/health"
        health_timeout_seconds = 3
        """
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    data_dir = tmp_path / "data"
    yield data_dir
    # Whatever happened in the test, no app it started outlives it.
    for state_file in (data_dir / "environments").glob("*/state.json"):
        state = EnvironmentDir(data_dir, state_file.parent.name).load()
        if state.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(state.process.pid, signal.SIGKILL)


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def app_repo(tmp_path: Path, port: int) -> GitRepo:
    repo = GitRepo(tmp_path / "app")
    repo.commit(
        "v1", {"app.py": APP.format(version="v1", health_status=200), "pyproject.toml": pyproject(port)}
    )
    return repo


def crash(pid: int) -> None:
    """Kill the app's whole process group, as a crash would (not a requested stop), and wait until
    the kernel has taken it down: SIGKILL is delivered asynchronously."""
    os.killpg(pid, signal.SIGKILL)
    wait_until(lambda: not process_group_alive(pid), what=f"process group {pid} gone")


def get(port: int, path: str = "/") -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)


def deploy(data_dir: Path, repo: GitRepo, ref: str = "HEAD", **extra: object) -> object:
    payload = DeployServicePayload(environment="staging", repo=str(repo.path), ref=ref, **extra)  # type: ignore[arg-type]
    return deploy_service(payload, data_dir=data_dir)


def test_tiny_app_deploys_and_passes_its_health_check(data_dir: Path, app_repo: GitRepo, port: int) -> None:
    result = deploy(data_dir, app_repo)

    assert result.status == "deployed", result.failure_reason
    assert get(port).text == "v1 greeting="
    assert result.health is not None and result.health.status == "up" and result.health.http_status == 200
    env = EnvironmentDir(data_dir, "staging")
    assert (env.root / "current").resolve() == (env.releases / result.release_id).resolve()
    assert (env.releases / result.release_id / "app.py").is_file()
    assert env.release_info(result.release_id).source["commit"] == app_repo.head()
    state = env.load()
    assert state.current_release == result.release_id and state.process is not None
    assert state.process.port == port

    report = health_check(HealthCheckPayload(environment="staging"), data_dir=data_dir)
    assert (report.status, report.healthy, report.process_alive) == ("up", True, True)


def test_deploying_the_live_commit_again_changes_nothing(
    data_dir: Path, app_repo: GitRepo, port: int
) -> None:
    first = deploy(data_dir, app_repo)
    assert first.status == "deployed" and not first.unchanged
    env = EnvironmentDir(data_dir, "staging")
    serving = env.load().process
    assert serving is not None

    again = deploy(data_dir, app_repo)  # a retried request, a second worker finishing the same run

    assert (again.status, again.unchanged, again.release_id) == ("deployed", True, first.release_id)
    assert "already live" in again.message
    assert env.load().process == serving  # not stopped, not restarted
    assert sorted(p.name for p in env.releases.iterdir()) == [first.release_id]  # no second release
    assert get(port).text == "v1 greeting="
    # Another setting asked for is another deploy.
    changed = deploy(data_dir, app_repo, health_path="/")
    assert not changed.unchanged and changed.release_id != first.release_id


def test_a_dead_attempts_leftovers_are_removed_by_the_next_deploy(
    data_dir: Path, app_repo: GitRepo, port: int
) -> None:
    first = deploy(data_dir, app_repo)
    env = EnvironmentDir(data_dir, "staging")
    # What an agent killed mid-deploy leaves: a staging folder, and a release never started or judged.
    (env.releases / ".staging-new-dead").mkdir()
    half = env.releases / "20200101T000000-deadbeef-0000"
    shutil.copytree(env.releases / first.release_id, half)
    (half / ".release.json").write_text(
        env.release_info(first.release_id)
        .model_copy(update={"release_id": half.name, "outcome": "pending"})
        .model_dump_json()
    )
    app_repo.commit("v2", {"app.py": APP.format(version="v2", health_status=200)})

    second = deploy(data_dir, app_repo)

    assert second.status == "deployed"
    assert sorted(p.name for p in env.releases.iterdir()) == sorted([first.release_id, second.release_id])
    assert get(port).text == "v2 greeting="


def test_release_failing_its_health_check_is_rolled_back(
    data_dir: Path, app_repo: GitRepo, port: int
) -> None:
    first = deploy(data_dir, app_repo)
    assert first.status == "deployed"
    app_repo.commit("v2 breaks health", {"app.py": APP.format(version="v2", health_status=500)})

    second = deploy(data_dir, app_repo)

    assert second.status == "rolled_back"
    assert second.active_release == first.release_id and second.previous_release == first.release_id
    assert "HTTP 500" in (second.failure_reason or "")
    assert get(port).text == "v1 greeting="  # the old release is serving again
    env = EnvironmentDir(data_dir, "staging")
    assert (env.root / "current").resolve().name == first.release_id
    assert env.release_info(second.release_id).outcome == "failed_health_check"
    assert "health endpoint is broken in v2" in (env.releases / second.release_id / "app.log").read_text()
    assert health_check(HealthCheckPayload(environment="staging"), data_dir=data_dir).status == "up"


def test_first_release_that_crashes_leaves_nothing_current(tmp_path: Path, data_dir: Path, port: int) -> None:
    repo = GitRepo(tmp_path / "crashing")
    repo.commit(
        "crash", {"app.py": "raise SystemExit('Traceback: boom')\n", "pyproject.toml": pyproject(port)}
    )
    result = deploy(data_dir, repo)
    assert result.status == "failed" and result.active_release is None
    assert "exited before it became healthy" in (result.failure_reason or "")
    report = health_check(HealthCheckPayload(environment="staging"), data_dir=data_dir)
    assert report.status == "not_deployed"


def test_requested_rollback_restores_the_previous_release(
    data_dir: Path, app_repo: GitRepo, port: int
) -> None:
    first = deploy(data_dir, app_repo)
    app_repo.commit("v2", {"app.py": APP.format(version="v2", health_status=200)})
    second = deploy(data_dir, app_repo)
    assert second.status == "deployed" and get(port).text.startswith("v2")

    back = rollback(RollbackPayload(environment="staging"), data_dir=data_dir)

    assert (back.status, back.from_release, back.to_release) == (
        "rolled_back",
        second.release_id,
        first.release_id,
    )
    assert get(port).text.startswith("v1")
    forward = rollback(
        RollbackPayload(environment="staging", release_id=second.release_id), data_dir=data_dir
    )
    assert forward.status == "rolled_back" and get(port).text.startswith("v2")


def test_stale_fencing_token_is_refused(data_dir: Path, app_repo: GitRepo, port: int) -> None:
    assert deploy(data_dir, app_repo, fencing_token=7).status == "deployed"
    app_repo.commit("v2", {"app.py": APP.format(version="v2", health_status=200)})

    with pytest.raises(StaleFencingTokenError, match=r"fencing_token 6 is stale.*token 7"):
        deploy(data_dir, app_repo, fencing_token=6)
    with pytest.raises(StaleFencingTokenError):
        stop_service(StopServicePayload(environment="staging", fencing_token=3), data_dir=data_dir)

    assert get(port).text.startswith("v1")  # the stale holder changed nothing
    assert deploy(data_dir, app_repo, fencing_token=8).status == "deployed"
    assert get(port).text.startswith("v2")
    assert EnvironmentDir(data_dir, "staging").load().highest_fencing_token == 8


def test_update_config_is_validated_and_applied_with_a_restart(
    data_dir: Path, app_repo: GitRepo, port: int
) -> None:
    deploy(data_dir, app_repo)
    with pytest.raises(ValidationError, match="values"):
        UpdateConfigPayload(environment="staging", values={"bad-key": "x"})
    with pytest.raises(ValidationError, match="newlines"):
        UpdateConfigPayload(environment="staging", values={"GREETING": "two\nlines"})
    with pytest.raises(ValidationError, match="nothing to do"):
        UpdateConfigPayload(environment="staging")

    applied = update_config(
        UpdateConfigPayload(environment="staging", values={"GREETING": "hello"}), data_dir=data_dir
    )

    assert (applied.status, applied.keys_changed, applied.restarted) == ("applied", ["GREETING"], True)
    assert get(port).text == "v1 greeting=hello"
    env = EnvironmentDir(data_dir, "staging")
    assert env.config_file.read_text() == "GREETING=hello\n"

    reverted = update_config(UpdateConfigPayload(environment="staging", revert=True), data_dir=data_dir)
    assert reverted.keys_changed == ["GREETING"]
    assert get(port).text == "v1 greeting="


def test_update_config_whose_values_fail_the_health_check_is_reverted(
    data_dir: Path, tmp_path: Path, port: int
) -> None:
    picky = GitRepo(tmp_path / "picky")
    app = APP.format(version="v1", health_status='500 if os.environ.get("BROKEN") else 200')
    picky.commit("v1", {"app.py": app, "pyproject.toml": pyproject(port)})
    deploy(data_dir, picky)
    update_config(UpdateConfigPayload(environment="staging", values={"GREETING": "hi"}), data_dir=data_dir)

    result = update_config(
        UpdateConfigPayload(environment="staging", values={"BROKEN": "1", "GREETING": "bye"}),
        data_dir=data_dir,
    )

    assert (result.status, result.restarted) == ("reverted", True)
    assert result.keys_changed == ["BROKEN", "GREETING"]
    assert "failed its health check with the new values" in result.message
    assert "HTTP 500" in result.message
    assert EnvironmentDir(data_dir, "staging").config_file.read_text() == "GREETING=hi\n"
    assert result.health is not None and result.health.status == "up"
    assert get(port).text == "v1 greeting=hi"  # the app serves again, with the values from before


def test_health_check_reports_a_stopped_app_as_down(data_dir: Path, app_repo: GitRepo, port: int) -> None:
    deploy(data_dir, app_repo)
    pid = EnvironmentDir(data_dir, "staging").load().process.pid  # type: ignore[union-attr]

    stopped = stop_service(StopServicePayload(environment="staging"), data_dir=data_dir)

    assert stopped.stopped
    report = health_check(HealthCheckPayload(environment="staging"), data_dir=data_dir)
    assert (report.status, report.healthy, report.process_alive) == ("down", False, False)
    assert report.reason == "stopped by request"
    with pytest.raises(httpx.ConnectError):
        get(port)
    assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"

    restarted = restart_service(RestartServicePayload(environment="staging"), data_dir=data_dir)
    assert restarted.status == "up" and get(port).text.startswith("v1")


def test_a_crashed_app_is_reported_down_with_its_error_lines(data_dir: Path, app_repo: GitRepo) -> None:
    deploy(data_dir, app_repo)
    env = EnvironmentDir(data_dir, "staging")
    state = env.load()
    assert state.process is not None
    log_path = env.releases / state.process.release_id / "app.log"
    with log_path.open("a") as log:
        log.write("Traceback (most recent call last):\nRuntimeError: ERROR database unreachable\n")
    crash(state.process.pid)

    report = health_check(HealthCheckPayload(environment="staging"), data_dir=data_dir)

    assert report.status == "down" and report.reason == "the app's process is gone"
    assert "RuntimeError: ERROR database unreachable" in report.error_lines


def test_bad_input_is_refused_with_clear_errors(data_dir: Path, app_repo: GitRepo, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="environment"):
        DeployServicePayload(environment="../etc", repo=str(app_repo.path))
    with pytest.raises(ValidationError, match="exactly one of repo or artifact_sha256"):
        DeployServicePayload(environment="staging")
    with pytest.raises(ValidationError, match="fencing_token"):
        DeployServicePayload(environment="staging", repo=str(app_repo.path), fencing_token=-1)
    with pytest.raises(UnknownTargetError, match="'kubernetes' is not available"):
        deploy(data_dir, app_repo, target="kubernetes")
    with pytest.raises(UnknownEnvironmentError, match="'nowhere'"):
        health_check(HealthCheckPayload(environment="nowhere"), data_dir=data_dir)
    unconfigured = GitRepo(tmp_path / "plain")
    unconfigured.commit("no config", {"app.py": "print('hi')\n"})
    with pytest.raises(DeployConfigError, match="run_command"):
        deploy(data_dir, unconfigured)
    releases = EnvironmentDir(data_dir, "staging").releases
    assert not [p for p in releases.iterdir()]  # the refused release left nothing behind
