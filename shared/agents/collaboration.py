"""What every agent answers about collaboration, unless it declares its own handler:

- `COLLAB_MESSAGE`: a message posted in a thread the agent takes part in. The default acknowledges
  it. An agent that acts on messages returns `{"reply": {"kind", "body", "attachments"}}`; the
  orchestrator posts that reply once, with the acknowledgement (a redelivered message is answered
  from the bus's stored first answer, or acknowledged twice harmlessly).
- `HANDOFF_OFFER`: work handed over to this agent. The default accepts what it can do (the request
  type is one of its handlers, the capability one of its own) while it is not draining, and
  declines otherwise, saying why: `{"accept": bool, "reason": str}`.

Both are bus requests from the orchestrator (config/state/100_collaboration.sql has the delivery
rules); their request ids are derived from the message or the offer, so a resend is the same request.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.agents.runtime import AgentDefinition, RequestContext

COLLAB_MESSAGE = "COLLAB_MESSAGE"
HANDOFF_OFFER = "HANDOFF_OFFER"


class IncomingMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    message_id: int = Field(ge=1)
    thread_id: str = Field(min_length=1)
    topic: str = ""
    ticket_id: str | None = None
    task_id: str | None = None
    author: str = Field(min_length=1)
    author_kind: str = "agent"
    kind: str = "comment"
    body: str = Field(min_length=1, max_length=20_000)
    attachments: list[dict[str, Any]] = Field(default_factory=list, max_length=50)
    reply_to: int | None = None


class HandoffOffer(BaseModel):
    model_config = ConfigDict(extra="ignore")
    handoff_id: str = Field(min_length=1)
    thread_id: str = Field(min_length=1)
    ticket_id: str | None = None
    task_id: str | None = None
    from_name: str = Field(min_length=1)
    to_capability: str | None = None
    to_agent: str | None = None
    request_type: str = Field(min_length=1)
    reason: str = ""
    context: dict[str, Any] = Field(default_factory=dict)


async def acknowledge(message: IncomingMessage, ctx: RequestContext) -> dict[str, Any]:
    ctx.logger.info(
        "message received", extra={"thread_id": message.thread_id, "message_id": message.message_id}
    )
    return {"received": True}


def offer_fits(agent: AgentDefinition, offer: HandoffOffer) -> str | None:
    """None when `agent` can do what the offer asks; otherwise why not."""
    if offer.request_type not in agent.handlers:
        return f"{agent.agent_id} does not serve {offer.request_type}"
    if offer.to_capability and offer.to_capability not in agent.capability_names:
        return f"{agent.agent_id} does not offer the capability {offer.to_capability}"
    return None


async def decide_offer(offer: HandoffOffer, ctx: RequestContext) -> dict[str, Any]:
    agent: AgentDefinition = ctx.resources["agent_definition"]
    if ctx.resources.get("draining", lambda: False)():
        return {"accept": False, "reason": f"{agent.agent_id} is draining"}
    why_not = offer_fits(agent, offer)
    return {"accept": why_not is None, "reason": why_not or f"{agent.agent_id} takes it"}


def install_collaboration_handlers(agent: AgentDefinition) -> None:
    """Give `agent` the default COLLAB_MESSAGE and HANDOFF_OFFER handlers it did not declare itself."""
    if COLLAB_MESSAGE not in agent.handlers:
        agent.handler(COLLAB_MESSAGE, payload_model=IncomingMessage)(acknowledge)
    if HANDOFF_OFFER not in agent.handlers:
        agent.handler(HANDOFF_OFFER, payload_model=HandoffOffer)(decide_offer)
