"""The feature-dev agent service: GENERATE_CODE and REFACTOR_CODE on the agent runtime."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from services.feature_dev.models import (
    ChangeKind,
    ChangePayload,
    ChangeResult,
    GenerateCodePayload,
    RefactorCodePayload,
)
from services.feature_dev.skill import NO_LLM_MESSAGE, make_change
from shared.agents import AgentDefinition, Capability, RequestContext
from shared.agents.collaboration import HANDOFF_OFFER, HandoffOffer, decide_offer
from shared.bus import AgentResponseEvent, ResponseStatus
from shared.llm import openhands_llm_from_spec, parse_llm_spec

agent = AgentDefinition(
    agent_id="feature-dev",
    name="Feature development",
    capabilities=[
        Capability("feature_dev", "Implements or refactors code on a new branch with an LLM coding agent"),
    ],
    capacity=2,  # each change runs a whole coding-agent conversation
    port_setting="feature_dev_port",
    tags=["codegen", "openhands"],
)


@agent.on_startup
async def _check_llm(resources: dict[str, Any]) -> None:
    settings = resources["settings"]
    spec = parse_llm_spec(settings.llm)  # a malformed DEVTOOLS_LLM stops the service at start
    resources["llm_spec"] = spec
    resources["worktree_root"] = Path(settings.data_dir) / "feature-dev" / "worktrees"
    if spec is not None:
        # Import the SDK (slow) and check the spec once now, not inside the first request.
        await asyncio.to_thread(openhands_llm_from_spec, spec)


async def _change(
    kind: ChangeKind, payload: ChangePayload, ctx: RequestContext
) -> ChangeResult | AgentResponseEvent:
    spec = ctx.resources.get("llm_spec")
    if spec is None:
        return AgentResponseEvent.for_request(
            ctx.request, ctx.agent_id, ResponseStatus.REJECTED, error=NO_LLM_MESSAGE
        )
    llm = openhands_llm_from_spec(spec)  # one per request: the SDK's LLM keeps per-conversation metrics
    return await asyncio.to_thread(
        make_change, kind, payload, llm=llm, work_root=ctx.resources["worktree_root"]
    )


@agent.handler("GENERATE_CODE", payload_model=GenerateCodePayload)
async def generate(payload: GenerateCodePayload, ctx: RequestContext) -> ChangeResult | AgentResponseEvent:
    return await _change("generate", payload, ctx)


@agent.handler("REFACTOR_CODE", payload_model=RefactorCodePayload)
async def refactor(payload: RefactorCodePayload, ctx: RequestContext) -> ChangeResult | AgentResponseEvent:
    return await _change("refactor", payload, ctx)


@agent.handler(HANDOFF_OFFER, payload_model=HandoffOffer)
async def consider_handoff(offer: HandoffOffer, ctx: RequestContext) -> dict[str, Any]:
    """Take handed-over changes only with a model to make them; without one a person is better placed."""
    if ctx.resources.get("llm_spec") is None:
        return {"accept": False, "reason": NO_LLM_MESSAGE}
    return await decide_offer(offer, ctx)
