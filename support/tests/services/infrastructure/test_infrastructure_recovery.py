"""What an infrastructure agent killed mid-deploy leaves behind, put right by the next deploy (the
`local` target with the sample app as real processes): an app it started but never recorded, and a
release it made current and started but never judged. The states are made as the dead attempt
would have left them on disk; services/infrastructure/recovery.py puts them right."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent_orchestrator.demo.sample_repo import SampleRepo, create_sample_repo
from services.infrastructure.contract import DeployResult, DeployServicePayload
from services.infrastructure.env_state import EnvironmentDir, RunningProcess
from services.infrastructure.recovery import stray_groups
from services.infrastructure.skills import deploy_service
from services.infrastructure.supervisor import APP_ENVIRONMENT_VARIABLE, is_alive, start_app, stop_app
from shared.git import resolve_ref
from shared.ports import port_is_free
from shared.process import clean_environment, process_group_alive
from support.tests.agents.processes import free_port, wait_until

pytestmark = pytest.mark.integration
ENV = "staging"
DEAD = "20200101T000000-deadbeef-0000"  # the dead attempt's release


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    data_dir = tmp_path / "data"
    yield data_dir
    for state_file in (data_dir / "environments").glob("*/state.json"):
        process = EnvironmentDir(data_dir, state_file.parent.name).load().process
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture
def repo(tmp_path: Path) -> SampleRepo:
    return create_sample_repo(tmp_path / "repo", free_port())


def deploy(data_dir: Path, repo: SampleRepo, ref: str, key: str | None = None) -> DeployResult:
    payload = DeployServicePayload(environment=ENV, repo=str(repo.path), ref=ref, idempotency_key=key)
    return deploy_service(payload, data_dir=data_dir)


def dead_attempt_release(env: EnvironmentDir, like: str, commit: str) -> Path:
    """A release folder as a dead deploy of `commit` left it: complete, never judged."""
    folder = env.releases / DEAD
    shutil.copytree(env.release_dir(like), folder)
    info = env.release_info(like)
    env.save_release_info(
        info.model_copy(
            update={"release_id": DEAD, "outcome": "pending", "source": {**info.source, "commit": commit}}
        )
    )
    return folder


def stop_live_app(env: EnvironmentDir) -> None:
    """The dead deploy got as far as stopping the live app (recorded, as the target does)."""
    state = env.load()
    assert state.process is not None
    stop_app(state.process)
    state.process = None
    env.save(state)


def only_the_recorded_app_runs(env: EnvironmentDir) -> None:
    state = env.load()
    assert state.process is not None and is_alive(state.process)
    assert stray_groups(env, state) == set()


def test_an_app_a_dead_deploy_started_but_never_recorded_is_stopped(data_dir: Path, repo: SampleRepo) -> None:
    first = deploy(data_dir, repo, repo.base)
    env = EnvironmentDir(data_dir, ENV)
    stop_live_app(env)
    folder = dead_attempt_release(env, first.release_id, "0" * 40)
    # ... started its release's app and died before writing the pid to state.json.
    stray = subprocess.Popen(
        [sys.executable, "app.py"],
        cwd=folder,
        # Started as the target starts an app: marked with its environment's folder.
        env={
            **clean_environment(folder),
            "PORT": str(repo.port),
            APP_ENVIRONMENT_VARIABLE: str(env.root.resolve()),
        },
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    # Someone else's process in a release folder (a person's shell, a `tail -f app.log`): not an app.
    bystander = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"],
        cwd=env.release_dir(first.release_id),
        stdin=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        wait_until(lambda: not port_is_free(repo.port), what="the stray app listening")

        second = deploy(data_dir, repo, repo.feature)

        assert second.status == "deployed", second.message  # the stray no longer holds the port
        assert stray.wait(timeout=10) is not None
        assert bystander.poll() is None
        assert not folder.exists()
        assert sorted(p.name for p in env.releases.iterdir()) == sorted([first.release_id, second.release_id])
        assert env.load().history == [first.release_id, second.release_id]
        only_the_recorded_app_runs(env)
        assert httpx.get(repo.url + "/", timeout=5).text == "Hello, world!"
    finally:
        for process in (stray, bystander):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def made_current_and_started(env: EnvironmentDir, folder: Path, port: int) -> RunningProcess:
    """The dead deploy made its release current and started its app (recorded), then died."""
    info = env.release_info(folder.name)
    running = start_app(
        info.run_command,
        cwd=folder,
        port=port,
        env=clean_environment(folder),
        log_path=folder / "app.log",
        release_id=folder.name,
        environment_dir=env.root,
    )
    env.point_current_at(folder.name)
    state = env.load()
    state.current_release, state.process = folder.name, running
    env.save(state)
    return running


def test_an_unjudged_release_of_another_commit_is_given_up(data_dir: Path, repo: SampleRepo) -> None:
    first = deploy(data_dir, repo, repo.base)
    env = EnvironmentDir(data_dir, ENV)
    stop_live_app(env)
    folder = dead_attempt_release(env, first.release_id, "0" * 40)
    dead_app = made_current_and_started(env, folder, repo.port)

    second = deploy(data_dir, repo, repo.feature)

    assert second.status == "deployed", second.message
    assert second.release_id != DEAD and second.previous_release == first.release_id
    assert not process_group_alive(dead_app.pid)
    assert not folder.exists()
    assert env.load().history == [first.release_id, second.release_id]
    only_the_recorded_app_runs(env)


def test_an_unjudged_release_of_the_same_commit_is_judged_and_kept(data_dir: Path, repo: SampleRepo) -> None:
    first = deploy(data_dir, repo, repo.base)
    env = EnvironmentDir(data_dir, ENV)
    stop_live_app(env)
    folder = dead_attempt_release(env, first.release_id, resolve_ref(repo.path, repo.feature))
    dead_app = made_current_and_started(env, folder, repo.port)

    again = deploy(data_dir, repo, repo.feature)  # the retry of the deploy that died

    assert again.status == "deployed" and again.unchanged, again.message
    assert again.release_id == DEAD
    assert env.release_info(DEAD).outcome == "healthy"
    state = env.load()
    assert state.history == [first.release_id, DEAD]
    assert state.process == dead_app  # judged as it runs: not stopped and started again
    only_the_recorded_app_runs(env)


def test_a_deploy_sent_again_with_its_key_is_answered_as_the_first_time(
    data_dir: Path, repo: SampleRepo
) -> None:
    # A failed deploy (no previous release to restore): sent again by the run's next attempt.
    failing = repo.path / "refuse"
    failing.touch()
    env = EnvironmentDir(data_dir, ENV)
    env.root.mkdir(parents=True)
    env.config_file.write_text(f"APP_FAIL_IF_EXISTS={failing}\n")
    first = deploy(data_dir, repo, repo.feature, key="run-1:deploy")
    assert first.status == "failed" and not first.replayed

    again = deploy(data_dir, repo, repo.feature, key="run-1:deploy")

    assert again.replayed and again.model_copy(update={"replayed": False}) == first
    assert [p.name for p in env.releases.iterdir()] == [first.release_id]  # not released twice

    # Once something else was deployed, the key no longer answers: the deploy is decided afresh.
    failing.unlink()
    other = deploy(data_dir, repo, repo.base, key="run-2:deploy")
    assert other.status == "deployed"
    late = deploy(data_dir, repo, repo.feature, key="run-1:deploy")
    assert late.status == "deployed" and not late.replayed and late.release_id != first.release_id
