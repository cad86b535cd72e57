"""The orchestrator agent as a real process: registers, decomposes, routes (to itself), aggregates."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from support.tests.agents.processes import (
    AGENT_AUTH,
    ServiceProcess,
    agent_request_body,
    registry_record,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize(
        "agent_service", [("orchestrator", {"module": "services.orchestrator_agent"})], indirect=True
    ),
]


def ask(service: ServiceProcess, request_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    body = agent_request_body("orchestrator", request_type, payload)
    response = httpx.post(f"{service.url}/agent-request", headers=AGENT_AUTH, json=body, timeout=30)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_the_four_skills_over_http(agent_service: ServiceProcess, registry: ServiceProcess) -> None:
    record = registry_record(registry, "orchestrator")
    assert record is not None and [c["name"] for c in record["capabilities"]] == ["orchestration"]

    plan = ask(
        agent_service,
        "DECOMPOSE_TASK",
        {"description": "Deploy v2 to staging", "context": {"repo": "/srv/shop", "environment": "staging"}},
    )
    assert plan["status"] == "success", plan
    assert plan["result"]["kind"] == "release" and plan["result"]["source"] == "rules"
    assert plan["result"]["order"].index("build") < plan["result"]["order"].index("deploy")

    unknown = ask(agent_service, "DECOMPOSE_TASK", {"description": "x", "kind": "migration"})
    assert unknown["status"] == "error" and "unknown task kind 'migration'" in unknown["error"]

    routed = ask(agent_service, "ROUTE_REQUEST", {"request_type": "AGGREGATE_RESULTS"})
    assert routed["status"] == "success", routed
    assert (
        routed["result"]["agent_id"] == "orchestrator" and routed["result"]["base_url"] == agent_service.url
    )

    nobody = ask(agent_service, "ROUTE_REQUEST", {"capabilities": ["teleportation"]})
    assert nobody["status"] == "error" and "no live agent offers all of: teleportation" in nobody["error"]

    merged = ask(
        agent_service,
        "AGGREGATE_RESULTS",
        {
            "results": [
                {"agent": "cicd", "status": "success", "result": {"status": "passed"}},
                {"agent": "code-review", "status": "error", "error": "unknown ref 'x'"},
            ]
        },
    )
    assert merged["result"]["status"] == "partial" and merged["result"]["items"][0]["agent"] == "code-review"

    status = ask(agent_service, "GET_STATUS", {})
    assert status["result"]["source"] == "self" and status["result"]["llm"] == "none"
    assert status["result"]["requests_handled"] == {
        "AGGREGATE_RESULTS": 1,
        "DECOMPOSE_TASK": 2,
        "GET_STATUS": 1,
        "ROUTE_REQUEST": 2,
    }
    assert status["result"]["registry"]["agent_id"] == "orchestrator"


def test_bad_payload_names_the_field(agent_service: ServiceProcess) -> None:
    body = {
        "source_agent": "tests",
        "target_agent": "orchestrator",
        "request_type": "DECOMPOSE_TASK",
        "payload": {"kind": "docs"},
    }
    response = httpx.post(f"{agent_service.url}/agent-request", headers=AGENT_AUTH, json=body, timeout=30)
    assert response.status_code == 422 and "payload.description" in response.text
