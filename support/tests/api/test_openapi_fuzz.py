"""schemathesis over every service's OpenAPI schema: no request, however malformed, is a 5xx.

The real platform runs as processes (the registry, every agent and the orchestrator service, which
hosts the orchestrator agent); every operation of each service's schema is called with generated
requests, valid and invalid, carrying the token a real caller presents. The live `/openapi.json`
of each process must be the document fuzzed (schemathesis makes one test per operation when pytest
collects, before any process runs, so the document comes from the same app factory in this process).

`POST /agent-request` takes any `payload` in the schema; what each request type accepts is its
payload model. So each request type of each agent is fuzzed too, from a schema of its own, and an
answer there must be neither a 5xx nor an `internal` error (an exception the handler did not
understand: what a 500 is to an HTTP route).

A bounded, derandomized number of examples per operation keeps the module fast and repeatable;
`FUZZ_EXAMPLES=200` fuzzes deeper. What the fuzzing finds is fixed in the service, with a focused
test beside that service's other tests.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from pydantic import BaseModel
from schemathesis.checks import not_a_server_error

from agent_orchestrator.api.app import create_orchestrator_app
from services.agent_registry.app import create_app as create_registry_app
from shared.agents import AgentDefinition, AgentService, AgentServiceSettings
from shared.config import load_settings
from support.tests.agents.processes import (
    ADMIN_AUTH,
    AGENT_AUTH,
    PLATFORM_TOKEN,
    REPO_ROOT,
    ServiceProcess,
    free_port,
    kill_deployed_apps,
    registry_record,
    running_registry,
    service_module,
    wait_healthy,
    wait_until,
)

pytestmark = pytest.mark.integration

AGENTS = ["code-review", "cicd", "infrastructure", "documentation", "feature-dev"]
# Every service of the platform; "orchestrator" is the orchestrator service: the runs and tickets
# APIs and the orchestrator agent's /agent-request.
SERVICES = ["agent-registry", "orchestrator", *AGENTS]
MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
REQUEST_TIMEOUT_S = 30
METRICS_TOKEN = "test-metrics-token"

# No operation is left out. The fuzzer cannot name a real workflow, run, ticket, agent or repository
# (the services run in an empty sandbox folder, so even a relative "." is no repository), so every
# generated request is answered without side effects beyond rows in this module's database and
# folders under its data folder. Server-sent event streams included: only an existing run's stays open.


class Services:
    """The platform's processes, by service name."""

    def __init__(self) -> None:
        self.by_name: dict[str, ServiceProcess] = {}

    def url(self, name: str) -> str:
        return self.by_name[name].url


def _agent(service: str) -> AgentDefinition:
    module = "services.orchestrator_agent" if service == "orchestrator" else service_module(service)[0]
    return importlib.import_module(f"{module}.agent").agent  # type: ignore[no-any-return]


def served_schema(service: str) -> dict[str, Any]:
    """The OpenAPI document the service's process serves, built by the same factory in this process."""
    settings = load_settings(api_token=PLATFORM_TOKEN)
    agent_settings = AgentServiceSettings(port=1, registration=False)
    if service == "agent-registry":
        return create_registry_app(settings).openapi()
    if service == "orchestrator":
        return create_orchestrator_app(settings, agent_settings=agent_settings).openapi()
    return AgentService(_agent(service), settings, agent_settings).app.openapi()


SCHEMAS = {service: served_schema(service) for service in SERVICES}


def _launch(
    name: str, module: str, env: dict[str, str], port: int, log_dir: Path, cwd: Path
) -> ServiceProcess:
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=cwd,
            env={**env, "PYTHONPATH": str(REPO_ROOT)},
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    return ServiceProcess(name, f"http://127.0.0.1:{port}", process, log_path)


@pytest.fixture(scope="module")
def services(
    module_env: dict[str, str], log_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Services]:
    """The registry, then every agent and the orchestrator service at once, each in an empty
    sandbox folder; each must serve the very schema fuzzed."""
    sandbox = tmp_path_factory.mktemp("sandbox")
    env = {**module_env, "DEVTOOLS_METRICS_TOKEN": METRICS_TOKEN}
    running = Services()
    with running_registry(env, log_dir) as registry:
        running.by_name["agent-registry"] = registry
        shared_env = {
            **env,
            "DEVTOOLS_API_TOKEN": PLATFORM_TOKEN,
            "DEVTOOLS_REGISTRY_URL": registry.url,
            "DEVTOOLS_LLM": "none",
            "DEVTOOLS_DB_POOL_MAX": "6",
        }
        try:
            for name in [*AGENTS, "orchestrator"]:
                module, port_variable = service_module(name)
                port = free_port()
                service_env = {**shared_env, port_variable: str(port)}
                running.by_name[name] = _launch(name, module, service_env, port, log_dir, sandbox)
            for name in [*AGENTS, "orchestrator"]:
                wait_healthy(running.by_name[name])
                wait_until(lambda n=name: registry_record(registry, n), what=f"{name} registered")
            for name in SERVICES:
                live = httpx.get(f"{running.url(name)}/openapi.json", timeout=10)
                assert live.status_code == 200, live.text
                assert live.json() == SCHEMAS[name], f"{name} serves another schema than the one fuzzed"
            yield running
        finally:
            for name, service in running.by_name.items():
                if name != "agent-registry" and service.process.poll() is None:
                    try:
                        service.terminate(timeout=30)
                    except Exception:  # a hung process must not keep the others running
                        service.kill()
            with contextlib.suppress(Exception):
                kill_deployed_apps(Path(module_env["DEVTOOLS_DATA_DIR"]))


def auth_for(service: str, method: str, path: str) -> dict[str, str]:
    """The token a legitimate caller of this operation presents."""
    if service == "agent-registry" and not (method == "POST" and path == "/register"):
        # Heartbeats and deregistrations take the agent's own token or the admin token; the
        # platform token is a 403 there, which would leave those handlers unexercised.
        return ADMIN_AUTH
    # The platform token: agents' /agent-request, the registry's /register, every orchestrator route.
    return AGENT_AUTH


def _configured(schema: schemathesis.BaseSchema) -> schemathesis.BaseSchema:
    schema.config.update(request_timeout=REQUEST_TIMEOUT_S)
    schema.config.generation.update(max_examples=MAX_EXAMPLES, deterministic=True, database="none")
    return schema


def _reachable(case: schemathesis.Case) -> None:
    """Valid values the schema cannot say, so that valid requests get past the first check: a
    registration's base_url must be an http(s) URL."""
    body = case.body
    if case.path == "/register" and isinstance(body, dict) and isinstance(body.get("base_url"), str):
        body["base_url"] = "http://127.0.0.1:9/"


def _service_test(service: str) -> Any:
    schema = _configured(schemathesis.openapi.from_dict(SCHEMAS[service]))

    @schema.parametrize()
    def test(case: schemathesis.Case, services: Services) -> None:
        _reachable(case)
        case.call_and_validate(
            base_url=services.url(service),
            headers=auth_for(service, case.method.upper(), case.path),
            checks=[not_a_server_error],
            timeout=REQUEST_TIMEOUT_S,
        )

    test.__name__ = f"test_no_5xx_from_{service.replace('-', '_')}"
    return test


def _hoisted(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    """The model's JSON schema with its definitions moved into the document's components."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(schema.pop("$defs", {}))
    return schema


def payload_schema(service: str) -> dict[str, Any]:
    """An OpenAPI document with one operation per request type of the agent: the body of
    `POST /agent-request` addressed to it, with that type's payload model (the path names the type;
    the test sends the body to the real /agent-request)."""
    agent = _agent(service)
    components: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    for request_type, spec in sorted(agent.handlers.items()):
        payload = _hoisted(spec.payload_model, components) if spec.payload_model else {"type": "object"}
        body = {
            "type": "object",
            "properties": {
                "source_agent": {"const": "fuzz"},
                "target_agent": {"const": agent.agent_id},
                "request_type": {"const": request_type},
                "payload": payload,
                "timeout_seconds": {"const": REQUEST_TIMEOUT_S - 5},
            },
            "required": ["source_agent", "target_agent", "request_type", "payload", "timeout_seconds"],
            "additionalProperties": False,
        }
        paths[f"/agent-request/{request_type}"] = {
            "post": {
                "operationId": request_type,
                "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
                "responses": {"200": {"description": "the agent's answer"}},
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": f"{service} request types", "version": "1"},
        "paths": paths,
        "components": {"schemas": components},
    }


def _payload_test(service: str) -> Any:
    schema = _configured(schemathesis.openapi.from_dict(payload_schema(service)))

    @schema.parametrize()
    def test(case: schemathesis.Case, services: Services) -> None:
        case.path = "/agent-request"  # the operation's path only named the request type
        response = case.call(base_url=services.url(service), headers=AGENT_AUTH, timeout=REQUEST_TIMEOUT_S)
        case.validate_response(response, checks=[not_a_server_error])
        if response.status_code == 200:
            answer = response.json()
            assert answer.get("error_code") != "internal", (
                f"an exception the handler did not expect: {answer}"
            )

    test.__name__ = f"test_no_internal_error_from_{service.replace('-', '_')}_request_types"
    return test


for _name in SERVICES:
    _test = _service_test(_name)
    globals()[_test.__name__] = _test
for _name in ["orchestrator", *AGENTS]:
    _test = _payload_test(_name)
    globals()[_test.__name__] = _test


@pytest.mark.parametrize("service", SERVICES)
def test_metrics_need_a_token(services: Services, service: str) -> None:
    """/metrics answers the metrics token (what Prometheus sends) and the platform token, no one else."""
    url = f"{services.url(service)}/metrics"
    assert httpx.get(url, timeout=10).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401
    for auth in ({"Authorization": f"Bearer {METRICS_TOKEN}"}, AGENT_AUTH):
        scraped = httpx.get(url, headers=auth, timeout=10)
        assert scraped.status_code == 200 and "devtools_http_requests_total" in scraped.text
    assert httpx.get(f"{services.url(service)}/health", timeout=10).status_code == 200
