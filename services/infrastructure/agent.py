"""The infrastructure agent service: deploys, rollbacks, health checks and config on the agent runtime.

Mutating requests are fenced against the `env:<env>` SQL locks (services/infrastructure/fencing.py):
the agent needs the database (DEVTOOLS_DATABASE_URL, or the embedded server).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.infrastructure import skills
from services.infrastructure.contract import DeployResult, DeployServicePayload, HealthReport
from services.infrastructure.fencing import EnvironmentLocks
from services.infrastructure.models import (
    HealthCheckPayload,
    RestartServicePayload,
    RollbackPayload,
    RollbackResult,
    StopResult,
    StopServicePayload,
    UpdateConfigPayload,
    UpdateConfigResult,
)
from shared.agents import AgentDefinition, Capability, RequestContext
from shared.backends import resolve_backends
from shared.llm import chat_model_from_settings

# The request types that change an environment: fenced with the env:<environment> lock.
FencedPayload = (
    DeployServicePayload | RollbackPayload | UpdateConfigPayload | StopServicePayload | RestartServicePayload
)

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
async def _load_chat_model(resources: dict[str, Any]) -> None:
    resources["chat_model"] = chat_model_from_settings(resources["settings"])


@agent.on_startup
async def _connect_locks(resources: dict[str, Any]) -> None:
    settings = resources["settings"]
    database_url = settings.database_url or resolve_backends(settings).database_url
    resources["env_locks"] = await EnvironmentLocks.connect(database_url, owner=resources["replica_id"])


@agent.on_shutdown
async def _close_locks(resources: dict[str, Any]) -> None:
    locks = resources.pop("env_locks", None)
    if locks is not None:
        await locks.close()


def _data_dir(ctx: RequestContext) -> Path:
    return Path(ctx.resources["settings"].data_dir)


async def _fenced[R](ctx: RequestContext, payload: FencedPayload, skill: Callable[..., R], **extra: Any) -> R:
    """Run a mutating skill under the fencing rule: the caller's checked token, or our own lease's."""
    locks: EnvironmentLocks = ctx.resources["env_locks"]
    async with locks.fenced(
        payload.environment, payload.fencing_token, request_id=ctx.request.request_id
    ) as token:
        fenced = payload.model_copy(update={"fencing_token": token})
        return await asyncio.to_thread(
            skill, fenced, data_dir=_data_dir(ctx), token_check=locks.check_from_thread, **extra
        )


@agent.handler("DEPLOY_SERVICE", payload_model=DeployServicePayload)
async def deploy(payload: DeployServicePayload, ctx: RequestContext) -> DeployResult:
    return await _fenced(ctx, payload, skills.deploy_service, chat_model=ctx.resources.get("chat_model"))


@agent.handler("ROLLBACK", payload_model=RollbackPayload)
async def rollback(payload: RollbackPayload, ctx: RequestContext) -> RollbackResult:
    return await _fenced(ctx, payload, skills.rollback)


@agent.handler("HEALTH_CHECK", payload_model=HealthCheckPayload)
async def health_check(payload: HealthCheckPayload, ctx: RequestContext) -> HealthReport:
    return await asyncio.to_thread(
        skills.health_check, payload, data_dir=_data_dir(ctx), chat_model=ctx.resources.get("chat_model")
    )


@agent.handler("UPDATE_CONFIG", payload_model=UpdateConfigPayload)
async def update_config(payload: UpdateConfigPayload, ctx: RequestContext) -> UpdateConfigResult:
    return await _fenced(ctx, payload, skills.update_config)


@agent.handler("STOP", payload_model=StopServicePayload)
async def stop(payload: StopServicePayload, ctx: RequestContext) -> StopResult:
    return await _fenced(ctx, payload, skills.stop_service)


@agent.handler("RESTART", payload_model=RestartServicePayload)
async def restart(payload: RestartServicePayload, ctx: RequestContext) -> HealthReport:
    return await _fenced(ctx, payload, skills.restart_service, chat_model=ctx.resources.get("chat_model"))
