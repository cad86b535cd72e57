"""DEPLOY_ARTIFACT end to end: real cicd and infrastructure agent processes sharing one registry, bus and
data dir. cicd builds and stores the artifact, hands it to infrastructure over the bus, and answers with
infrastructure's DeployResult."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.cicd.deploy import DeployArtifactPayload, dispatch_deploy, prepare_deploy
from services.cicd.errors import NoInfrastructureAgentError
from shared.artifacts import ArtifactStore
from shared.bus import EventBus
from support.tests.agents.processes import (
    AGENT_AUTH,
    ServiceProcess,
    agent_request_body,
    free_port,
    registry_record,
    running_agent,
)
from support.tests.gitrepo import GitRepo

pytestmark = pytest.mark.integration

SERVER = textwrap.dedent(
    """
    import os
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"served from the built artifact"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):
            pass

    HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
    """
)


def service_repo(path: Path, port: int) -> GitRepo:
    """A tiny HTTP service whose build is a tarball of its own tree (what infrastructure unpacks)."""
    config = textwrap.dedent(
        f"""
        build_command = "mkdir -p dist && git archive --format=tar.gz --prefix=svc/ -o dist/svc.tar.gz HEAD"
        artifact_glob = "dist/*.tar.gz"
        run_command = "python server.py"
        port = {port}
        health_path = "/"
        health_timeout_seconds = 15
        """
    )
    repo = GitRepo(path)
    repo.commit("service", {"server.py": SERVER, "devtools.toml": config})
    return repo


@pytest.fixture(scope="module")
def cicd(module_env: dict[str, str], registry: ServiceProcess, log_dir: Path) -> Iterator[ServiceProcess]:
    with running_agent("cicd", module_env, registry, log_dir) as service:
        yield service


@pytest.fixture(scope="module")
def infrastructure(
    module_env: dict[str, str], registry: ServiceProcess, log_dir: Path
) -> Iterator[ServiceProcess]:
    with running_agent("infrastructure", module_env, registry, log_dir) as service:
        yield service


def _post(service: ServiceProcess, target: str, request_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    body = agent_request_body(target, request_type, payload, timeout_seconds=90)
    response = httpx.post(f"{service.url}/agent-request", headers=AGENT_AUTH, json=body, timeout=120)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _build(cicd: ServiceProcess, repo: GitRepo) -> dict[str, Any]:
    built = _post(cicd, "cicd", "VALIDATE_BUILD", {"repo": str(repo.path)})
    assert built["status"] == "success" and built["result"]["status"] == "succeeded", built
    [artifact] = built["result"]["artifacts"]
    return dict(artifact)


def test_without_a_live_infrastructure_agent_the_deploy_is_a_clear_error(
    cicd: ServiceProcess, registry: ServiceProcess, tmp_path: Path
) -> None:
    assert registry_record(registry, "infrastructure") is None  # this test runs before one is started
    artifact = _build(cicd, service_repo(tmp_path / "service", free_port()))

    answer = _post(
        cicd, "cicd", "DEPLOY_ARTIFACT", {"artifact_sha256": artifact["sha256"], "environment": "nobody"}
    )

    assert answer["status"] == "error"
    assert answer["error"].startswith("NoInfrastructureAgentError: no live infrastructure agent")


async def test_without_the_registry_shortcut_an_unanswered_bus_request_is_a_clear_error(
    redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    # No infrastructure agent reads this keyspace: the request sits on the bus until our deadline.
    store = ArtifactStore(tmp_path / "data")
    blob = tmp_path / "app.txt"
    blob.write_text("bytes\n")
    stored = store.store(blob, repo="r", ref="HEAD", commit="0" * 40)
    prepared = prepare_deploy(
        DeployArtifactPayload(artifact_sha256=stored.sha256, environment="silent"), data_dir=tmp_path / "data"
    )
    async with EventBus(redis_url, redis_prefix, agent_id="tests") as bus:
        with pytest.raises(
            NoInfrastructureAgentError, match="no infrastructure agent answered DEPLOY_SERVICE"
        ):
            await dispatch_deploy(prepared, bus=bus, registry=None, source_agent="cicd", seconds_left=2.0)


def test_build_then_deploy_artifact_serves_the_app(
    cicd: ServiceProcess, infrastructure: ServiceProcess, tmp_path: Path
) -> None:
    port = free_port()
    repo = service_repo(tmp_path / "service", port)
    artifact = _build(cicd, repo)

    answer = _post(
        cicd, "cicd", "DEPLOY_ARTIFACT", {"artifact_sha256": artifact["sha256"], "environment": "handoff"}
    )

    assert answer["status"] == "success", answer
    result = answer["result"]
    assert (result["status"], result["environment"], result["infrastructure_agent"]) == (
        "deployed", "handoff", "infrastructure",
    )  # fmt: skip
    assert result["artifact"]["sha256"] == artifact["sha256"] and result["artifact"]["commit"] == repo.head()
    assert result["active_release"] == result["release_id"] and result["health"]["status"] == "up"
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text == "served from the built artifact"
    health = _post(infrastructure, "infrastructure", "HEALTH_CHECK", {"environment": "handoff"})["result"]
    assert (health["status"], health["release_id"]) == ("up", result["release_id"])


def test_infrastructures_refusal_is_the_deploys_error(
    cicd: ServiceProcess, infrastructure: ServiceProcess, tmp_path: Path
) -> None:
    artifact = _build(cicd, service_repo(tmp_path / "service", free_port()))
    payload = {"artifact_sha256": artifact["sha256"], "environment": "fenced", "fencing_token": 999_999}

    answer = _post(cicd, "cicd", "DEPLOY_ARTIFACT", payload)

    assert answer["status"] == "error"
    assert answer["error"].startswith(
        "DeployHandoffError: infrastructure agent 'infrastructure' answered DEPLOY_SERVICE with error: "
        "FencingTokenNotHeldError: fencing_token 999999 is not held"
    )
