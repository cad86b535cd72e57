"""`python -m services.feature_dev`: run the feature-dev agent (port DEVTOOLS_FEATURE_DEV_PORT, 8002)."""

from services.feature_dev.agent import agent
from shared.agents import run_agent

run_agent(agent)
