"""`python -m services.code_review`: run the code-review agent (port DEVTOOLS_CODE_REVIEW_PORT, 8003)."""

from services.code_review.agent import agent
from shared.agents import run_agent

run_agent(agent)
