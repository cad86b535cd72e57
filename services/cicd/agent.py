"""The cicd agent service: RUN_PIPELINE, VALIDATE_BUILD and DEPLOY_ARTIFACT on the agent runtime.

DEPLOY_ARTIFACT is the one skill that calls another agent: infrastructure, over the event bus.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from services.cicd.build import BuildResult, ValidateBuildPayload, validate_build
from services.cicd.deploy import DeployArtifactPayload, DeployArtifactResult, dispatch_deploy, prepare_deploy
from services.cicd.pipeline import PipelineResult, RunPipelinePayload, run_pipeline
from shared.agents import AgentDefinition, Capability, RequestContext
from shared.llm import chat_model_from_settings

agent = AgentDefinition(
    agent_id="cicd",
    name="CI/CD",
    capabilities=[
        Capability("cicd", "Runs a repository's tests and build at a ref; stores and hands over artifacts"),
    ],
    capacity=2,  # test runs and builds are CPU-heavy: a few at a time per replica
    port_setting="cicd_port",
    tags=["ci", "build", "tests"],
)


@agent.on_startup
async def _load_chat_model(resources: dict[str, Any]) -> None:
    # DEVTOOLS_LLM=none gives None: failures get no diagnosis prose, everything else is unchanged.
    resources["chat_model"] = chat_model_from_settings(resources["settings"])


def _data_dir(ctx: RequestContext) -> Path:
    return Path(ctx.resources["settings"].data_dir)


@agent.handler("RUN_PIPELINE", payload_model=RunPipelinePayload)
async def pipeline(payload: RunPipelinePayload, ctx: RequestContext) -> PipelineResult:
    return await asyncio.to_thread(
        run_pipeline, payload, data_dir=_data_dir(ctx), chat_model=ctx.resources.get("chat_model")
    )


@agent.handler("VALIDATE_BUILD", payload_model=ValidateBuildPayload)
async def build(payload: ValidateBuildPayload, ctx: RequestContext) -> BuildResult:
    return await asyncio.to_thread(
        validate_build, payload, data_dir=_data_dir(ctx), chat_model=ctx.resources.get("chat_model")
    )


@agent.handler("DEPLOY_ARTIFACT", payload_model=DeployArtifactPayload)
async def hand_over(payload: DeployArtifactPayload, ctx: RequestContext) -> DeployArtifactResult:
    prepared = await asyncio.to_thread(prepare_deploy, payload, data_dir=_data_dir(ctx))
    return await dispatch_deploy(
        prepared,
        bus=ctx.resources["bus"],
        registry=ctx.resources.get("registry"),
        source_agent=ctx.agent_id,
        seconds_left=ctx.seconds_left,
        correlation_id=ctx.request.correlation_id or ctx.request.request_id,
        priority=ctx.request.priority,
    )
