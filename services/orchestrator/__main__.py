"""`python -m services.orchestrator`: the orchestrator service (as `python -m agent_orchestrator.service`)."""

from agent_orchestrator.service import main

main()
