"""The infrastructure agent's optional LLM diagnosis, with scripted models and real apps: prose on top
of the deterministic health report, and a failing model costing only the prose."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel, GenericFakeChatModel

from services.infrastructure.contract import DeployServicePayload
from services.infrastructure.env_state import EnvironmentDir
from services.infrastructure.models import HealthCheckPayload
from services.infrastructure.skills import deploy_service, health_check
from support.tests.gitrepo import GitRepo
from support.tests.services.infrastructure import test_infrastructure_deploy as apps
from support.tests.services.infrastructure.test_infrastructure_deploy import APP, crash, deploy

pytestmark = pytest.mark.integration

# The deploy tests' fixtures: a data dir whose apps are killed afterwards, a tiny app on a free port.
data_dir, port, app_repo = apps.data_dir, apps.port, apps.app_repo


class RecordingModel(FakeListChatModel):
    """A scripted model that also keeps what it was shown."""

    shown: list[str] = []

    def _call(self, messages, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.shown.append(str(messages[-1].content))
        return super()._call(messages, *args, **kwargs)


def never_called() -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter([]))  # nothing scripted: a call would raise


def _crash(data_dir: Path) -> None:
    env = EnvironmentDir(data_dir, "staging")
    state = env.load()
    assert state.process is not None
    with (env.releases / state.process.release_id / "app.log").open("a") as log:
        log.write("Traceback (most recent call last):\nRuntimeError: ERROR database unreachable\n")
    crash(state.process.pid)


def test_a_down_app_gets_the_models_diagnosis_of_its_error_lines(data_dir: Path, app_repo: GitRepo) -> None:
    deploy(data_dir, app_repo)
    check = HealthCheckPayload(environment="staging")
    healthy = health_check(check, data_dir=data_dir, chat_model=never_called())
    assert (healthy.status, healthy.diagnosis, healthy.llm_warning) == ("up", None, None)  # no call when up
    _crash(data_dir)
    model = RecordingModel(responses=["The app lost its database; check DATABASE_URL."], shown=[])

    report = health_check(check, data_dir=data_dir, chat_model=model)

    assert (report.status, report.reason) == ("down", "the app's process is gone")
    assert report.diagnosis == "The app lost its database; check DATABASE_URL."
    assert "RuntimeError: ERROR database unreachable" in model.shown[0]
    assert "is down: the app's process is gone" in model.shown[0]


def test_a_failing_model_leaves_the_health_report_and_a_warning(data_dir: Path, app_repo: GitRepo) -> None:
    deploy(data_dir, app_repo)
    _crash(data_dir)
    plain = health_check(HealthCheckPayload(environment="staging"), data_dir=data_dir)

    report = health_check(
        HealthCheckPayload(environment="staging"), data_dir=data_dir, chat_model=never_called()
    )

    assert report.diagnosis is None
    assert report.llm_warning is not None and report.llm_warning.startswith("no LLM prose: the model call")
    comparable = {"checked_at", "llm_warning"}
    assert report.model_dump(exclude=comparable) == plain.model_dump(exclude=comparable)


def test_a_rolled_back_deploy_carries_a_diagnosis_of_the_failure(data_dir: Path, app_repo: GitRepo) -> None:
    deploy(data_dir, app_repo)
    app_repo.commit("v2", {"app.py": APP.format(version="v2", health_status=500)})
    model = RecordingModel(responses=["v2 answers 500 on /health; fix the handler."], shown=[])

    payload = DeployServicePayload(environment="staging", repo=str(app_repo.path))
    result = deploy_service(payload, data_dir=data_dir, chat_model=model)

    assert result.status == "rolled_back"
    assert result.health is not None and result.health.status == "up"  # v1 serves again
    assert result.health.diagnosis == "v2 answers 500 on /health; fix the handler."
    assert f"Deploy of release {result.release_id} failed" in model.shown[0]
    assert "HTTP 500" in model.shown[0]
