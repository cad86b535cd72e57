"""`python -m services.documentation`: run the documentation agent (DEVTOOLS_DOCUMENTATION_PORT, 8006)."""

from services.documentation.agent import agent
from shared.agents import run_agent

run_agent(agent)
