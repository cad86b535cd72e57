"""The code-review agent service: REVIEW_CODE and EXPLAIN_CODE on the agent runtime."""

from __future__ import annotations

import asyncio
from typing import Any

from services.code_review.explain import explain_code
from services.code_review.models import ExplainCodePayload, ExplainCodeResult, ReviewCodePayload, ReviewResult
from services.code_review.review import review_code
from shared.agents import AgentDefinition, Capability, RequestContext
from shared.llm import chat_model_from_settings

agent = AgentDefinition(
    agent_id="code-review",
    name="Code review",
    capabilities=[
        Capability(
            "code_review", "Reviews a change: lint on changed lines, complexity, secrets, files, tests"
        ),
        Capability("code_explanation", "Explains a Python file or symbol from its AST"),
    ],
    capacity=4,
    port_setting="code_review_port",
    tags=["review", "python"],
)


@agent.on_startup
async def _load_chat_model(resources: dict[str, Any]) -> None:
    # DEVTOOLS_LLM=none gives None: reviews stay fully deterministic.
    resources["chat_model"] = chat_model_from_settings(resources["settings"])


@agent.handler("REVIEW_CODE", payload_model=ReviewCodePayload)
async def review(payload: ReviewCodePayload, ctx: RequestContext) -> ReviewResult:
    return await asyncio.to_thread(review_code, payload, chat_model=ctx.resources.get("chat_model"))


@agent.handler("EXPLAIN_CODE", payload_model=ExplainCodePayload)
async def explain(payload: ExplainCodePayload, ctx: RequestContext) -> dict[str, Any]:
    result: ExplainCodeResult = await asyncio.to_thread(
        explain_code, payload, chat_model=ctx.resources.get("chat_model")
    )
    return result.model_dump(mode="json", by_alias=True)
