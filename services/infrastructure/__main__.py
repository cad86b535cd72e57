"""`python -m services.infrastructure`: run the infrastructure agent (DEVTOOLS_INFRASTRUCTURE_PORT, 8004)."""

from services.infrastructure.agent import agent
from shared.agents import run_agent

run_agent(agent)
