"""`python -m services.cicd`: run the cicd agent (port DEVTOOLS_CICD_PORT, 8005)."""

from services.cicd.agent import agent
from shared.agents import run_agent

run_agent(agent)
