"""VALIDATE_BUILD and DEPLOY_ARTIFACT: real builds of generated repos into the content-addressed store."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import textwrap
from pathlib import Path

import httpx
import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel, GenericFakeChatModel
from pydantic import ValidationError

from services.cicd.build import ValidateBuildPayload, validate_build
from services.cicd.deploy import DeployArtifactPayload, prepare_deploy
from services.cicd.errors import NoBuildCommandError
from services.infrastructure.env_state import EnvironmentDir
from services.infrastructure.skills import deploy_service
from shared.artifacts import ArtifactNotFoundError
from support.tests.gitrepo import GitRepo

pytestmark = pytest.mark.integration

SERVER = textwrap.dedent(
    """
    import os
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"served from the artifact"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
    """
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_configured_build_stores_artifacts_content_addressed_once(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    build = "mkdir -p out && cp payload.txt out/payload.txt"
    repo.commit("v1", {"payload.txt": "release bytes\n",
                       "devtools.toml": f'build_command = "{build}"\nartifact_glob = "out/*"\n'})  # fmt: skip
    data_dir = tmp_path / "data"

    first = validate_build(ValidateBuildPayload(repo=str(repo.path)), data_dir=data_dir)
    repo.commit("unrelated change", {"README.md": "docs\n"})
    second = validate_build(ValidateBuildPayload(repo=str(repo.path)), data_dir=data_dir)

    assert first.status == second.status == "succeeded"
    digest = hashlib.sha256(b"release bytes\n").hexdigest()
    assert [a.sha256 for a in first.artifacts] == [a.sha256 for a in second.artifacts] == [digest]
    assert first.artifacts[0].newly_stored and not second.artifacts[0].newly_stored
    store = data_dir / "artifacts" / "sha256"
    assert (store / digest).read_bytes() == b"release bytes\n"
    assert sorted(p.name for p in store.iterdir() if not p.name.startswith(".")) == [digest, f"{digest}.json"]
    manifest = json.loads((store / f"{digest}.json").read_text())
    assert manifest["file_name"] == "payload.txt" and manifest["size"] == 14
    assert manifest["commit"] == first.commit and manifest["repo"] == str(repo.path)
    assert [b["commit"] for b in manifest["builds"]] == [first.commit, second.commit]


def test_failing_build_stores_nothing_and_says_why(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.commit(
        "broken",
        {"devtools.toml": 'build_command = "echo compiling; echo ERROR missing header >&2; exit 2"\n'},
    )
    data_dir = tmp_path / "data"
    result = validate_build(ValidateBuildPayload(repo=str(repo.path)), data_dir=data_dir)
    assert (result.status, result.exit_code, result.artifacts) == ("failed", 2, [])
    assert "ERROR missing header" in result.log_tail
    assert not (data_dir / "artifacts" / "sha256").exists() or not any(
        (data_dir / "artifacts" / "sha256").glob("*.json")
    )


def test_python_build_then_deploy_the_artifact(tmp_path: Path) -> None:
    port = free_port()
    repo = GitRepo(tmp_path / "service")
    pyproject = textwrap.dedent(
        f"""
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "tiny-service"
        version = "1.2.0"

        [tool.setuptools]
        py-modules = ["server"]

        [tool.devtools]
        run_command = "python server.py"
        port = {port}
        health_path = "/"
        health_timeout_seconds = 5
        """
    )
    repo.commit("service", {"pyproject.toml": pyproject, "server.py": SERVER})
    data_dir = tmp_path / "data"

    built = validate_build(ValidateBuildPayload(repo=str(repo.path)), data_dir=data_dir)

    assert built.status == "succeeded", built.log_tail
    assert built.command_source == "default:python-build" and "--no-isolation" in built.command
    names = sorted(a.file_name for a in built.artifacts)
    assert names == ["tiny_service-1.2.0-py3-none-any.whl", "tiny_service-1.2.0.tar.gz"]
    for artifact in built.artifacts:
        assert hashlib.sha256(Path(artifact.path).read_bytes()).hexdigest() == artifact.sha256
    sdist = next(a for a in built.artifacts if a.file_name.endswith(".tar.gz"))

    handoff = prepare_deploy(
        DeployArtifactPayload(artifact_sha256=sdist.sha256, environment="preview", fencing_token=3),
        data_dir=data_dir,
    )
    assert handoff.request.model_dump(mode="json", exclude_none=True) == {
        "environment": "preview", "target": "local", "ref": "HEAD",
        "artifact_sha256": sdist.sha256, "fencing_token": 3,
    }  # fmt: skip
    assert handoff.artifact.commit == built.commit

    try:
        deployed = deploy_service(handoff.request, data_dir=data_dir)
        assert deployed.status == "deployed", deployed.failure_reason
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text == "served from the artifact"
    finally:
        state = EnvironmentDir(data_dir, "preview").load()
        if state.process is not None:
            os.killpg(state.process.pid, signal.SIGKILL)


def test_bad_build_and_deploy_input(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.commit("docs only", {"README.md": "nothing to build\n"})
    with pytest.raises(NoBuildCommandError, match="build_command"):
        validate_build(ValidateBuildPayload(repo=str(repo.path)), data_dir=tmp_path / "data")
    with pytest.raises(ValidationError, match="artifact_sha256"):
        DeployArtifactPayload(artifact_sha256="abc", environment="preview")
    with pytest.raises(ArtifactNotFoundError, match="no artifact with sha256"):
        prepare_deploy(
            DeployArtifactPayload(artifact_sha256="0" * 64, environment="preview"), data_dir=tmp_path
        )


def test_failed_build_gets_the_models_diagnosis_and_a_failing_model_only_a_warning(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.commit(
        "broken", {"devtools.toml": 'build_command = "echo ERROR missing header cart.h >&2; exit 2"\n'}
    )
    data_dir = tmp_path / "data"
    payload = ValidateBuildPayload(repo=str(repo.path))
    model = FakeListChatModel(responses=["cart.h is missing: add it or fix the include path."])

    diagnosed = validate_build(payload, data_dir=data_dir, chat_model=model)
    failed_model = validate_build(
        payload, data_dir=data_dir, chat_model=GenericFakeChatModel(messages=iter([]))
    )

    assert (diagnosed.status, diagnosed.exit_code) == ("failed", 2)
    assert diagnosed.diagnosis == "cart.h is missing: add it or fix the include path."
    assert diagnosed.llm_warning is None
    assert (failed_model.status, failed_model.exit_code, failed_model.diagnosis) == ("failed", 2, None)
    assert failed_model.llm_warning is not None and "model call failed" in failed_model.llm_warning


def test_a_successful_build_asks_the_model_nothing(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    build = "mkdir -p out && echo bytes > out/a.txt"
    repo.commit("ok", {"devtools.toml": f'build_command = "{build}"\nartifact_glob = "out/*"\n'})
    never = GenericFakeChatModel(messages=iter([]))  # would leave a warning if it were called
    built = validate_build(
        ValidateBuildPayload(repo=str(repo.path)), data_dir=tmp_path / "data", chat_model=never
    )
    assert (built.status, built.diagnosis, built.llm_warning) == ("succeeded", None, None)
