"""The orchestrator's agent side: DECOMPOSE_TASK, ROUTE_REQUEST, AGGREGATE_RESULTS, GET_STATUS.

(The workflow host that also lives on the orchestrator's port is separate work; these four skills
are what other agents and workflows ask of it over the bus or POST /agent-request.)
"""

from __future__ import annotations

import asyncio
from typing import Any

from services.orchestrator_agent.aggregate import aggregate_results
from services.orchestrator_agent.catalogue import default_catalogue
from services.orchestrator_agent.decompose import decompose_task
from services.orchestrator_agent.models import (
    AgentStatusView,
    AggregateResult,
    AggregateResultsPayload,
    DecomposeResult,
    DecomposeTaskPayload,
    GetStatusPayload,
    RouteRequestPayload,
    RouteResult,
)
from services.orchestrator_agent.routing import route_request
from services.orchestrator_agent.status import ORCHESTRATOR_AGENT_ID, AgentActivity, get_status
from shared.agents import AgentDefinition, Capability, RegistryClient, RequestContext
from shared.llm import chat_model_from_settings, parse_llm_spec

agent = AgentDefinition(
    agent_id=ORCHESTRATOR_AGENT_ID,
    name="Orchestrator",
    capabilities=[
        Capability("orchestration", "Decomposes tasks into agent plans, routes requests, aggregates results"),
    ],
    capacity=8,
    port_setting="orchestrator_port",
    tags=["orchestration"],
)


@agent.on_startup
async def _prepare(resources: dict[str, Any]) -> None:
    settings = resources["settings"]
    default_catalogue()  # a broken catalogue stops the service at start, not at the first request
    resources["chat_model"] = chat_model_from_settings(settings)
    spec = parse_llm_spec(settings.llm)
    resources["activity"] = AgentActivity(ORCHESTRATOR_AGENT_ID, str(spec) if spec else "none")


def _registry(ctx: RequestContext) -> RegistryClient:
    client = ctx.resources.get("registry")
    if client is None:  # registration turned off: route through the configured registry all the same
        if "routing_registry" not in ctx.resources:
            ctx.resources["routing_registry"] = RegistryClient.from_settings(ctx.resources["settings"])
        client = ctx.resources["routing_registry"]
    return client  # type: ignore[no-any-return]


@agent.on_shutdown
async def _close(resources: dict[str, Any]) -> None:
    if "routing_registry" in resources:
        await resources["routing_registry"].close()


@agent.handler("DECOMPOSE_TASK", payload_model=DecomposeTaskPayload)
async def decompose(payload: DecomposeTaskPayload, ctx: RequestContext) -> DecomposeResult:
    ctx.resources["activity"].record("DECOMPOSE_TASK")
    return await asyncio.to_thread(decompose_task, payload, chat_model=ctx.resources.get("chat_model"))


@agent.handler("ROUTE_REQUEST", payload_model=RouteRequestPayload)
async def route(payload: RouteRequestPayload, ctx: RequestContext) -> RouteResult:
    ctx.resources["activity"].record("ROUTE_REQUEST")
    return await route_request(payload, _registry(ctx))


@agent.handler("AGGREGATE_RESULTS", payload_model=AggregateResultsPayload)
async def aggregate(payload: AggregateResultsPayload, ctx: RequestContext) -> AggregateResult:
    ctx.resources["activity"].record("AGGREGATE_RESULTS")
    return aggregate_results(payload)


@agent.handler("GET_STATUS", payload_model=GetStatusPayload)
async def status(payload: GetStatusPayload, ctx: RequestContext) -> AgentStatusView:
    ctx.resources["activity"].record("GET_STATUS")
    return await get_status(payload, activity=ctx.resources["activity"], registry=_registry(ctx))
