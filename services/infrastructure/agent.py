"""The infrastructure agent service: deploys, rollbacks, health checks and config on the agent runtime."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from services.infrastructure import skills
from services.infrastructure.models import (
    DeployResult,
    DeployServicePayload,
    HealthCheckPayload,
    HealthReport,
    RestartServicePayload,
    RollbackPayload,
    RollbackResult,
    StopResult,
    StopServicePayload,
    UpdateConfigPayload,
    UpdateConfigResult,
)
from shared.lib.agent_runtime import AgentDefinition, Capability, RequestContext
from shared.llm import chat_model_from_settings

agent = AgentDefinition(
    agent_id="infrastructure",
    name="Infrastructure",
    capabilities=[
        Capability(
            "infrastructure",
            "Deploys releases to environments (local target), health checks, rollback, config updates",
        ),
    ],
    capacity=4,  # operations on one environment are serialized by its file lock anyway
    port_setting="infrastructure_port",
    tags=["deploy", "operations"],
    metadata={"targets": ["local"]},
)


@agent.on_startup
async def _load_chat_model(services: dict[str, Any]) -> None:
    services["chat_model"] = chat_model_from_settings(services["settings"])


def _data_dir(ctx: RequestContext) -> Path:
    return Path(ctx.services["settings"].data_dir)


@agent.handler("DEPLOY_SERVICE", payload_model=DeployServicePayload)
async def deploy(payload: DeployServicePayload, ctx: RequestContext) -> DeployResult:
    return await asyncio.to_thread(
        skills.deploy_service, payload, data_dir=_data_dir(ctx), chat_model=ctx.services.get("chat_model")
    )


@agent.handler("ROLLBACK", payload_model=RollbackPayload)
async def rollback(payload: RollbackPayload, ctx: RequestContext) -> RollbackResult:
    return await asyncio.to_thread(skills.rollback, payload, data_dir=_data_dir(ctx))


@agent.handler("HEALTH_CHECK", payload_model=HealthCheckPayload)
async def health_check(payload: HealthCheckPayload, ctx: RequestContext) -> HealthReport:
    return await asyncio.to_thread(
        skills.health_check, payload, data_dir=_data_dir(ctx), chat_model=ctx.services.get("chat_model")
    )


@agent.handler("UPDATE_CONFIG", payload_model=UpdateConfigPayload)
async def update_config(payload: UpdateConfigPayload, ctx: RequestContext) -> UpdateConfigResult:
    return await asyncio.to_thread(skills.update_config, payload, data_dir=_data_dir(ctx))


@agent.handler("STOP", payload_model=StopServicePayload)
async def stop(payload: StopServicePayload, ctx: RequestContext) -> StopResult:
    return await asyncio.to_thread(skills.stop_service, payload, data_dir=_data_dir(ctx))


@agent.handler("RESTART", payload_model=RestartServicePayload)
async def restart(payload: RestartServicePayload, ctx: RequestContext) -> HealthReport:
    return await asyncio.to_thread(
        skills.restart_service, payload, data_dir=_data_dir(ctx), chat_model=ctx.services.get("chat_model")
    )
