"""ROUTE_REQUEST and GET_STATUS against the real agent-registry service (a process, on real PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from services.orchestrator_agent.models import GetStatusPayload, RouteRequestPayload
from services.orchestrator_agent.routing import NoAgentAvailable, RoutingError, route_request
from services.orchestrator_agent.status import AgentActivity, UnknownAgent, get_status
from shared.agents import RegistryClient, RegistryUnavailable
from shared.bus import ErrorClass, ErrorInfo, classify
from support.tests.agents.fixtures import log_dir, module_env, module_prefix, registry  # noqa: F401
from support.tests.agents.processes import PLATFORM_TOKEN, ServiceProcess, free_port

pytestmark = pytest.mark.integration


def register(reg: ServiceProcess, name: str, caps: list[str], capacity: int = 2) -> str:
    agent_id = f"{name}-{uuid.uuid4().hex[:6]}"
    body: dict[str, Any] = {
        "agent_id": agent_id,
        "agent_name": name,
        "base_url": f"http://127.0.0.1:9/{agent_id}",
        "capabilities": caps,
        "capacity": capacity,
    }
    response = httpx.post(
        f"{reg.url}/register", json=body, headers={"Authorization": f"Bearer {PLATFORM_TOKEN}"}
    )
    assert response.status_code == 201, response.text
    return agent_id


@pytest.fixture
async def client(registry: ServiceProcess) -> AsyncIterator[RegistryClient]:  # noqa: F811
    client = RegistryClient(registry.url, platform_token=PLATFORM_TOKEN, cache_ttl=0)
    yield client
    await client.close()


async def test_routes_by_capability_and_by_request_type(
    registry: ServiceProcess,  # noqa: F811
    client: RegistryClient,
) -> None:
    reviewer = register(registry, "reviewer", ["code_review"])
    pipeline = register(registry, "pipeline", ["cicd", "build_cache"])
    routed = await route_request(RouteRequestPayload(capabilities=["code_review"]), client)
    assert routed.agent_id == reviewer and routed.capabilities == ["code_review"]
    assert routed.base_url.endswith(reviewer) and routed.status == "idle" and routed.capacity == 2
    by_type = await route_request(RouteRequestPayload(request_type="RUN_PIPELINE"), client)
    assert by_type.agent_id == pipeline and by_type.requested == ["cicd"]
    both = await route_request(
        RouteRequestPayload(capabilities=["build_cache"], request_type="VALIDATE_BUILD"), client
    )
    assert both.agent_id == pipeline and both.requested == ["build_cache", "cicd"]


async def test_no_live_agent_and_unknown_request_type_are_clear_errors(client: RegistryClient) -> None:
    with pytest.raises(NoAgentAvailable, match="no live agent offers all of: documentation"):
        await route_request(RouteRequestPayload(request_type="GENERATE_DOCS"), client)
    with pytest.raises(RoutingError, match="request_type: no capability serves 'TELEPORT'"):
        await route_request(RouteRequestPayload(request_type="TELEPORT"), client)
    with pytest.raises(ValidationError, match="give `capabilities` or `request_type`"):
        RouteRequestPayload()


async def test_no_live_agent_and_an_unknown_agent_carry_their_own_error_codes(client: RegistryClient) -> None:
    """Found by fuzzing the request types (support/tests/api/test_openapi_fuzz.py): both were answered
    `internal`, the code of an exception no handler expected."""
    with pytest.raises(NoAgentAvailable) as no_agent:
        await route_request(RouteRequestPayload(capabilities=["0"]), client)
    assert classify(no_agent.value) == ErrorInfo("no_live_agent", ErrorClass.RETRYABLE)
    with pytest.raises(UnknownAgent) as unknown:
        await get_status(GetStatusPayload(agent_id="0"), activity=AgentActivity(), registry=client)
    assert classify(unknown.value) == ErrorInfo("unknown_agent", ErrorClass.PERMANENT)


async def test_an_agent_id_no_agent_can_have_is_refused_and_never_breaks_the_url(
    client: RegistryClient,
) -> None:
    """Found by the fuzz too: an id with a control character made an invalid URL (`internal`)."""
    for bad in ("\x1f", "a/b", "../agents", "", "x" * 129):
        with pytest.raises(ValidationError, match="agent_id"):
            GetStatusPayload(agent_id=bad)
    # The registry client quotes whatever id it is given: one path segment, an honest 404.
    for odd in ("\x1f", "a/b?c=d", "../health", "#x"):
        assert await client.get_agent(odd) is None


async def test_unreachable_registry_is_reported_as_such() -> None:
    client = RegistryClient(f"http://127.0.0.1:{free_port()}", timeout=2)
    try:
        with pytest.raises(RegistryUnavailable, match="unreachable"):
            await route_request(RouteRequestPayload(capabilities=["code_review"]), client)
    finally:
        await client.close()


async def test_status_of_another_agent_comes_from_the_registry(
    registry: ServiceProcess,  # noqa: F811
    client: RegistryClient,
) -> None:
    agent_id = register(registry, "docs", ["docs_preview"])
    activity = AgentActivity()
    view = await get_status(GetStatusPayload(agent_id=agent_id), activity=activity, registry=client)
    assert view.source == "registry" and view.status == "idle"
    assert view.registry is not None and view.registry["agent_id"] == agent_id
    with pytest.raises(UnknownAgent, match="the registry has no agent 'ghost'"):
        await get_status(GetStatusPayload(agent_id="ghost"), activity=activity, registry=client)
    own = await get_status(GetStatusPayload(), activity=activity, registry=client)
    assert own.source == "self" and own.registry is None  # this orchestrator itself is not registered here
