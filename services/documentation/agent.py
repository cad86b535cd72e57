"""The documentation agent service: GENERATE_DOCS and UPDATE_README on the agent runtime."""

from __future__ import annotations

import asyncio
from typing import Any

from services.documentation.generate import generate_docs
from services.documentation.models import (
    GenerateDocsPayload,
    GenerateDocsResult,
    UpdateReadmePayload,
    UpdateReadmeResult,
)
from services.documentation.readme_update import update_readme
from shared.agents import AgentDefinition, Capability, RequestContext
from shared.llm import chat_model_from_settings

agent = AgentDefinition(
    agent_id="documentation",
    name="Documentation",
    capabilities=[
        Capability("documentation", "API reference, user guide and deployment guide from a repository"),
        Capability("readme_update", "Regenerates a marked README section, in place or on a branch"),
    ],
    capacity=4,
    port_setting="documentation_port",
    tags=["docs", "python"],
)


@agent.on_startup
async def _load_chat_model(resources: dict[str, Any]) -> None:
    # DEVTOOLS_LLM=none gives None: documents are built from the repository alone.
    resources["chat_model"] = chat_model_from_settings(resources["settings"])


@agent.handler("GENERATE_DOCS", payload_model=GenerateDocsPayload)
async def generate(payload: GenerateDocsPayload, ctx: RequestContext) -> GenerateDocsResult:
    return await asyncio.to_thread(generate_docs, payload, chat_model=ctx.resources.get("chat_model"))


@agent.handler("UPDATE_README", payload_model=UpdateReadmePayload)
async def readme(payload: UpdateReadmePayload, ctx: RequestContext) -> UpdateReadmeResult:
    return await asyncio.to_thread(update_readme, payload, chat_model=ctx.resources.get("chat_model"))
