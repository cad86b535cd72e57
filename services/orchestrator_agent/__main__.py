"""`python -m services.orchestrator_agent`: the orchestrator agent (port DEVTOOLS_ORCHESTRATOR_PORT, 8001)."""

from services.orchestrator_agent.agent import agent
from shared.agents import run_agent

run_agent(agent)
