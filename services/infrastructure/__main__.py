"""`python -m services.infrastructure`: run the infrastructure agent (DEVTOOLS_INFRASTRUCTURE_PORT, 8004)."""

from services.infrastructure.agent import agent
from shared.lib.agent_service import run_agent

run_agent(agent)
