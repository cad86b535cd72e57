"""The agent the task benchmark dispatches to: `python -m support.bench.noop_agent`.

NOOP answers at once with its payload: what is measured is the platform's own work per task
(claim, assign, bus, start, outcome), not an agent's.
"""

from __future__ import annotations

from typing import Any

from shared.agents import AgentDefinition, Capability, RequestContext, run_agent

agent = AgentDefinition(
    agent_id="noop",
    name="No-op benchmark agent",
    capabilities=[Capability("noop", "Answers at once")],
    capacity=32,
    tags=["bench"],
)


@agent.handler("NOOP")
async def noop(payload: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    return payload


if __name__ == "__main__":
    run_agent(agent)
